import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type AuthFile,
  createAuthenticator,
  devPrincipals,
  ensureDevCredentials,
  hashToken,
  parseAuthFile,
  readToken,
  tokenFile,
} from "./index.ts";

const hashA = hashToken("token-a");
const hashB = hashToken("token-b");

function authText(principals: Record<string, unknown>): string {
  return JSON.stringify({ version: 1, principals });
}

/** Runs a small Node script in another process; resolves when it exits. */
function runChild(script: string, ...args: string[]): { child: ChildProcess; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ["-e", script, ...args], { stdio: "ignore" });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => resolve(code));
  });
  return { child, exited };
}

describe("parseAuthFile", () => {
  it("accepts a valid file", () => {
    const file = parseAuthFile(
      authText({
        content: { kind: "server", tokenSha256: hashA, allow: ["*"] },
        "ops-bot_2": { kind: "client", tokenSha256: hashB, allow: ["content.*", "seo.rank_tracking"] },
      }),
      "auth.json",
    );
    expect(file.version).toBe(1);
    expect(file.principals["ops-bot_2"]).toEqual({
      kind: "client",
      tokenSha256: hashB,
      allow: ["content.*", "seo.rank_tracking"],
    });
  });

  it("names the source for invalid JSON and a wrong shape", () => {
    expect(() => parseAuthFile("{not json", "/etc/mesh/auth.json")).toThrow(/^\/etc\/mesh\/auth\.json: not valid JSON/);
    expect(() => parseAuthFile(JSON.stringify({ version: 2, principals: {} }), "auth.json")).toThrow(
      /auth\.json: expected \{ "version": 1/,
    );
    expect(() => parseAuthFile(JSON.stringify({ version: 1 }), "auth.json")).toThrow(/auth\.json: expected/);
  });

  it("names a principal whose name is not allowed", () => {
    expect(() =>
      parseAuthFile(authText({ "Bad Name": { kind: "client", tokenSha256: hashA, allow: ["*"] } }), "auth.json"),
    ).toThrow(/principal name "Bad Name"/);
  });

  it("names the principal and field of a bad kind", () => {
    expect(() =>
      parseAuthFile(authText({ alice: { kind: "admin", tokenSha256: hashA, allow: ["*"] } }), "auth.json"),
    ).toThrow(/auth\.json: principals\.alice\.kind must be "server" or "client"/);
  });

  it("names the principal and field of a bad hash", () => {
    for (const bad of ["abc", hashA.toUpperCase(), `${hashA}00`, 42]) {
      expect(() =>
        parseAuthFile(authText({ bob: { kind: "client", tokenSha256: bad, allow: ["*"] } }), "auth.json"),
      ).toThrow(/principals\.bob\.tokenSha256 must be 64 hex characters/);
    }
  });

  it("names the principal and field of an empty or malformed allow list entry", () => {
    for (const bad of [[""], ["content.*", ""], "content.*", [3], undefined]) {
      expect(() =>
        parseAuthFile(authText({ carol: { kind: "client", tokenSha256: hashA, allow: bad } }), "auth.json"),
      ).toThrow(/principals\.carol\.allow must be a list of patterns/);
    }
  });
});

describe("createAuthenticator", () => {
  const file: AuthFile = {
    version: 1,
    principals: {
      content: { kind: "server", tokenSha256: hashToken("content-token"), allow: ["*"] },
      writer: { kind: "client", tokenSha256: hashToken("writer-token"), allow: ["content.*"] },
      tracker: { kind: "client", tokenSha256: hashToken("tracker-token"), allow: ["seo.rank_tracking"] },
      researcher: {
        kind: "client",
        tokenSha256: hashToken("researcher-token"),
        allow: ["mesh.research.v1.ResearchService/*"],
      },
      nobody: { kind: "client", tokenSha256: hashToken("nobody-token"), allow: [] },
    },
  };
  const auth = createAuthenticator(file);
  const kr = "mesh.research.v1.ResearchService/KeywordResearch";
  const tr = "mesh.seo.v1.SeoService/TrackRankings";

  it("authenticates the right token and rejects others", () => {
    expect(auth.authenticate("writer-token")).toEqual({ name: "writer", kind: "client" });
    expect(auth.authenticate("content-token")).toEqual({ name: "content", kind: "server" });
    expect(auth.authenticate("writer-token ")).toBeUndefined();
    expect(auth.authenticate("")).toBeUndefined();
    expect(auth.authenticate("unknown")).toBeUndefined();
  });

  it("authorises by skill id glob", () => {
    const writer = { name: "writer", kind: "client" } as const;
    expect(auth.authorize(writer, kr, "content.keyword_research")).toBe(true);
    expect(auth.authorize(writer, tr, "seo.rank_tracking")).toBe(false);
    // The glob's dot is literal: "contentXfoo" is not under "content.".
    expect(auth.authorize(writer, "x.Y/Z", "contentXfoo")).toBe(false);
    // Without a skill id only the procedure is checked.
    expect(auth.authorize(writer, kr, undefined)).toBe(false);
  });

  it("authorises by exact skill id", () => {
    const tracker = { name: "tracker", kind: "client" } as const;
    expect(auth.authorize(tracker, tr, "seo.rank_tracking")).toBe(true);
    expect(auth.authorize(tracker, tr, "seo.rank_tracking_v2")).toBe(false);
    expect(auth.authorize(tracker, kr, "content.keyword_research")).toBe(false);
  });

  it("authorises by RPC path glob", () => {
    const researcher = { name: "researcher", kind: "client" } as const;
    expect(auth.authorize(researcher, kr, "content.keyword_research")).toBe(true);
    expect(auth.authorize(researcher, "mesh.research.v1.ResearchService/IdeateTopics", undefined)).toBe(true);
    expect(auth.authorize(researcher, tr, "seo.rank_tracking")).toBe(false);
    expect(auth.authorize(researcher, "mesh.research.v1.ResearchServiceX/KeywordResearch", undefined)).toBe(false);
  });

  it("lets * allow everything, and an empty grant list nothing", () => {
    const server = { name: "content", kind: "server" } as const;
    expect(auth.authorize(server, kr, "content.keyword_research")).toBe(true);
    expect(auth.authorize(server, "grpc.health.v1.Health/Check", undefined)).toBe(true);
    expect(auth.authorize({ name: "nobody", kind: "client" }, kr, "content.keyword_research")).toBe(false);
  });

  it("refuses principals not in the file", () => {
    expect(auth.authorize({ name: "mallory", kind: "server" }, kr, "content.keyword_research")).toBe(false);
  });
});

describe("ensureDevCredentials", () => {
  let dir: string;
  let dataDir: string;
  let authFile: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "mesh-auth-test-"));
    dataDir = join(dir, "data");
    authFile = join(dataDir, "auth.json");
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("creates a private token per dev principal and an auth file holding their hashes", () => {
    expect(ensureDevCredentials(dataDir, authFile)).toBe(true);
    const file = parseAuthFile(readFileSync(authFile, "utf8"), authFile);
    expect(Object.keys(file.principals).sort()).toEqual(Object.keys(devPrincipals).sort());
    expect(statSync(authFile).mode & 0o777).toBe(0o600);
    const auth = createAuthenticator(file);
    const tokens = new Set<string>();
    for (const name of Object.keys(devPrincipals)) {
      const path = tokenFile(dataDir, name);
      expect(path).toBe(join(dataDir, "tokens", `${name}.token`));
      expect(statSync(path).mode & 0o777).toBe(0o600);
      const token = readToken(dataDir, name);
      tokens.add(token);
      expect(file.principals[name]?.tokenSha256).toBe(hashToken(token));
      expect(auth.authenticate(token)?.name).toBe(name);
    }
    // Every principal got its own token.
    expect(tokens.size).toBe(Object.keys(devPrincipals).length);
    expect(existsSync(join(dataDir, ".auth.lock"))).toBe(false);
  });

  it("leaves existing credentials alone", () => {
    expect(ensureDevCredentials(dataDir, authFile)).toBe(true);
    const before = readFileSync(authFile, "utf8");
    const token = readToken(dataDir, "operator");
    expect(ensureDevCredentials(dataDir, authFile)).toBe(false);
    expect(readFileSync(authFile, "utf8")).toBe(before);
    expect(readToken(dataDir, "operator")).toBe(token);
  });

  it("waits for a held lock and creates the credentials once it is released", async () => {
    const lock = join(dataDir, ".auth.lock");
    mkdirSync(lock, { recursive: true });
    // Another "process" holds the lock and releases it without writing credentials.
    const { exited } = runChild(
      "setTimeout(() => require('node:fs').rmSync(process.argv[1], { recursive: true, force: true }), 200)",
      lock,
    );
    expect(ensureDevCredentials(dataDir, authFile)).toBe(true);
    expect(await exited).toBe(0);
    expect(existsSync(authFile)).toBe(true);
    expect(existsSync(lock)).toBe(false);
  });

  it("returns false when the lock holder finishes the auth file while it waits", async () => {
    const lock = join(dataDir, ".auth.lock");
    mkdirSync(lock, { recursive: true });
    const theirs = authText({ content: { kind: "server", tokenSha256: hashA, allow: ["*"] } });
    const { exited } = runChild(
      "setTimeout(() => require('node:fs').writeFileSync(process.argv[1], process.argv[2]), 200)",
      authFile,
      theirs,
    );
    expect(ensureDevCredentials(dataDir, authFile)).toBe(false);
    expect(await exited).toBe(0);
    // The other process's file is kept and no tokens were written.
    expect(readFileSync(authFile, "utf8")).toBe(theirs);
    expect(existsSync(tokenFile(dataDir, "content"))).toBe(false);
  });
});

describe("readToken", () => {
  it("prefers an explicit token and explains a missing token file", () => {
    const dir = mkdtempSync(join(tmpdir(), "mesh-token-test-"));
    try {
      expect(readToken(dir, "operator", "explicit")).toBe("explicit");
      expect(() => readToken(dir, "operator")).toThrow(/no token for "operator": set MESH_TOKEN/);
      mkdirSync(join(dir, "tokens"));
      writeFileSync(tokenFile(dir, "operator"), "from-file\n");
      expect(readToken(dir, "operator", "")).toBe("from-file");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
