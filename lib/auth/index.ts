/**
 * Authentication and authorisation of callers. A caller presents `Authorization: Bearer <token>`;
 * the auth file maps SHA-256 hashes of tokens to principals and their grants, so the file never
 * holds a usable secret. Tokens are compared in constant time. Grants are glob patterns over skill
 * ids (`content.*`) and RPC paths (`mesh.research.v1.ResearchService/*`).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

/** Kind of principal. */
export type PrincipalKind = "server" | "client";

/** One entry of the auth file. */
export interface PrincipalEntry {
  /** Server (one of the three binaries) or client (operators, services, tests). */
  kind: PrincipalKind;
  /** Hex SHA-256 of the principal's bearer token. */
  tokenSha256: string;
  /** Grants: glob patterns over skill ids and RPC paths; `*` allows everything. */
  allow: string[];
}

/** The auth file: `{ "version": 1, "principals": { name: entry } }`. */
export interface AuthFile {
  /** Format version. */
  version: 1;
  /** Principals by name. */
  principals: Record<string, PrincipalEntry>;
}

/** An authenticated caller. */
export interface Principal {
  /** Principal name from the auth file. */
  name: string;
  /** Server or client. */
  kind: PrincipalKind;
}

/** Hex SHA-256 of a token. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** A fresh random bearer token (256 bits, base64url). */
export function generateToken(): string {
  return randomBytes(32).toString("base64url");
}

function writeSecretFile(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, path);
  chmodSync(path, 0o600);
}

/** Principals created for development on first start, with their grants. */
export const devPrincipals: Readonly<Record<string, { kind: PrincipalKind; allow: string[] }>> = {
  content: { kind: "server", allow: ["*"] },
  operations: { kind: "server", allow: ["*"] },
  technical: { kind: "server", allow: ["*"] },
  operator: { kind: "client", allow: ["*"] },
};

/** Path of a principal's dev token file under the data directory. */
export function tokenFile(dataDir: string, principal: string): string {
  return join(dataDir, "tokens", `${principal}.token`);
}

/**
 * Creates dev credentials on first start: a random token per dev principal under
 * `<dataDir>/tokens/` and the auth file with their hashes. Safe when several processes race: a
 * lock directory serialises creation and later callers find the file complete. Returns true when
 * it created the credentials.
 */
export function ensureDevCredentials(dataDir: string, authFile: string): boolean {
  if (existsSync(authFile)) return false;
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const lock = join(dataDir, ".auth.lock");
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (existsSync(authFile)) return false;
      if (Date.now() > deadline) throw new Error(`could not take ${lock}; remove it if no mesh process is starting`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
  try {
    if (existsSync(authFile)) return false;
    const file: AuthFile = { version: 1, principals: {} };
    for (const [name, p] of Object.entries(devPrincipals)) {
      const token = generateToken();
      writeSecretFile(tokenFile(dataDir, name), `${token}\n`);
      file.principals[name] = { kind: p.kind, tokenSha256: hashToken(token), allow: [...p.allow] };
    }
    writeSecretFile(authFile, `${JSON.stringify(file, null, 2)}\n`);
    return true;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** Reads the token a process presents: explicit, else the dev token file of `principal`. */
export function readToken(dataDir: string, principal: string, explicit?: string): string {
  if (explicit !== undefined && explicit !== "") return explicit;
  const path = tokenFile(dataDir, principal);
  if (!existsSync(path)) {
    throw new Error(`no token for "${principal}": set MESH_TOKEN or create dev credentials (${path} is missing)`);
  }
  return readFileSync(path, "utf8").trim();
}

/** Parses and checks an auth file's content; errors name the offending entry. */
export function parseAuthFile(text: string, source: string): AuthFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${source}: not valid JSON (${(err as Error).message})`);
  }
  const file = raw as Partial<AuthFile>;
  if (
    file.version !== 1 ||
    typeof file.principals !== "object" ||
    file.principals === null ||
    Array.isArray(file.principals)
  ) {
    throw new Error(`${source}: expected { "version": 1, "principals": { … } }`);
  }
  for (const [name, p] of Object.entries(file.principals)) {
    if (typeof p !== "object" || p === null || Array.isArray(p))
      throw new Error(`${source}: principals.${name} must be an object`);
    if (!/^[a-z][a-z0-9_-]{0,63}$/.test(name))
      throw new Error(`${source}: principal name "${name}" must match [a-z][a-z0-9_-]*`);
    if (p.kind !== "server" && p.kind !== "client")
      throw new Error(`${source}: principals.${name}.kind must be "server" or "client"`);
    if (typeof p.tokenSha256 !== "string" || !/^[0-9a-f]{64}$/.test(p.tokenSha256)) {
      throw new Error(`${source}: principals.${name}.tokenSha256 must be 64 hex characters`);
    }
    if (!Array.isArray(p.allow) || p.allow.some((a) => typeof a !== "string" || a === "")) {
      throw new Error(`${source}: principals.${name}.allow must be a list of patterns`);
    }
  }
  return file as AuthFile;
}

function globToRegExp(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+?^${}()|[\]\\/]/g, "\\$&").replace(/\*/g, ".*");
  return new RegExp(`^${escaped}$`);
}

/** Verifies bearer tokens and grants against an auth file. */
export interface Authenticator {
  /** The principal a token belongs to, or undefined for an unknown token. */
  authenticate(token: string): Principal | undefined;
  /** Whether `principal` may call the RPC `procedure` (`pkg.Service/Method`), which is skill `skillId` if any. */
  authorize(principal: Principal, procedure: string, skillId: string | undefined): boolean;
}

/** Builds an {@link Authenticator} from a parsed auth file. */
export function createAuthenticator(file: AuthFile): Authenticator {
  const entries = Object.entries(file.principals).map(([name, p]) => ({
    principal: { name, kind: p.kind } satisfies Principal,
    hash: Buffer.from(p.tokenSha256, "hex"),
    grants: p.allow.map(globToRegExp),
  }));
  const byName = new Map(entries.map((e) => [e.principal.name, e]));
  return {
    authenticate(token) {
      const hash = createHash("sha256").update(token, "utf8").digest();
      let found: Principal | undefined;
      // Compare against every entry so the time taken does not depend on which one matches.
      for (const e of entries) {
        if (timingSafeEqual(hash, e.hash)) found = e.principal;
      }
      return found;
    },
    authorize(principal, procedure, skillId) {
      const e = byName.get(principal.name);
      if (e === undefined) return false;
      return e.grants.some((g) => g.test(procedure) || (skillId !== undefined && g.test(skillId)));
    },
  };
}

/** Loads the auth file from disk. */
export function loadAuthenticator(authFile: string): Authenticator {
  if (!existsSync(authFile)) {
    throw new Error(
      `auth file ${authFile} is missing: set MESH_AUTH_FILE or run "mesh tokens" to create dev credentials`,
    );
  }
  return createAuthenticator(parseAuthFile(readFileSync(authFile, "utf8"), authFile));
}
