/**
 * Configuration of one mesh process. One loader, explicit precedence: options passed in code >
 * environment variables > defaults. Empty environment values count as unset. Invalid values fail
 * at start with a message naming the variable. Libraries never read `process.env`; servers call
 * {@link loadConfig} once and pass the result down.
 */

import { createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { getHeapStatistics } from "node:v8";
import { createCatalog } from "../registry/index.ts";

/** The three server binaries. */
export const serverNames = ["content", "operations", "technical"] as const;
/** One of the three server binaries. */
export type ServerName = (typeof serverNames)[number];

/**
 * Default placement of the agents: each agent's `(mesh.common.v1.agent).default_server` option in
 * its proto service, the one place it is declared.
 */
export const defaultPlacement: Readonly<Record<string, ServerName>> = Object.freeze(
  Object.fromEntries(
    createCatalog().agents.map((a) => {
      if (!(serverNames as readonly string[]).includes(a.defaultServer)) {
        throw new Error(`agent ${a.id}: default_server "${a.defaultServer}" is not one of ${serverNames.join(", ")}`);
      }
      return [a.id, a.defaultServer as ServerName];
    }),
  ),
);

const defaultPorts: Readonly<Record<ServerName, number>> = { content: 7101, operations: 7102, technical: 7103 };

/** TLS material; present only when certificates are configured. */
export interface TlsConfig {
  /** PEM of the CA that signed every server certificate (clients verify peers with it). */
  caFile: string;
  /** PEM certificate of this process; defaults to `<dir>/<server>.crt`. */
  certFile: string | undefined;
  /** PEM private key of this process; defaults to `<dir>/<server>.key`. */
  keyFile: string | undefined;
  /** Directory made by `mesh certs`, holding ca.crt and one certificate + key per server. */
  dir: string | undefined;
}

/** Retry policy for idempotent skills. */
export interface RetryConfig {
  /** Attempts in all, the first included. */
  maxAttempts: number;
  /** Base delay of the exponential backoff. */
  baseDelayMs: number;
  /** Cap of one backoff delay. */
  maxDelayMs: number;
  /** Retries allowed per request, as a ratio (retry budget). */
  budgetRatio: number;
  /** Retries always allowed per second regardless of the ratio. */
  budgetMinPerSecond: number;
}

/** Circuit breaker policy per target server. */
export interface BreakerConfig {
  /** Consecutive transport failures that open the breaker. */
  failureThreshold: number;
  /** Time the breaker stays open before letting one trial call through (half-open). */
  halfOpenAfterMs: number;
}

/** Connection limits of the listening port (see lib/server/listener.ts). */
export interface HttpConfig {
  /** Longest a client may take to send a request's headers (and, on a new connection, its first bytes, TLS handshake or HTTP/2 preface). */
  headersTimeoutMs: number;
  /** Longest a client may take to send a whole request, headers and body; responses are not limited. */
  requestTimeoutMs: number;
  /** An HTTP/2 session with no open stream and no traffic is closed after this; HTTP/1.1 keep-alive waits the smaller of this and 5 s. */
  idleTimeoutMs: number;
  /** Concurrent connections accepted from one remote address; more are closed at once. */
  maxConnectionsPerAddress: number;
  /** Concurrent connections accepted in all; more are closed at once. */
  maxConnections: number;
}

/** The model provider every written text goes through (lib/model). */
export interface ModelConfig {
  /** OpenAI-compatible API root (`…/v1`); undefined = the deterministic built-in writer. */
  baseUrl: string | undefined;
  /** Model name sent to that API (required with the base URL). */
  name: string;
  /** Bearer key (MESH_MODEL_API_KEY or the file MESH_MODEL_API_KEY_FILE names; never logged). */
  apiKey: string | undefined;
  /** Longest one HTTP attempt may take (for a stream: the longest silence between chunks). */
  timeoutMs: number;
  /** Attempts in all, the first included, on 408, 429, 5xx and network errors. */
  maxAttempts: number;
  /** Completion tokens a call may use when the caller sets no limit. */
  maxTokens: number;
  /** Price per 1000 prompt tokens, in the currency of the cost budgets (0 for the built-in writer). */
  pricePromptPer1k: number;
  /** Price per 1000 completion tokens. */
  priceCompletionPer1k: number;
  /** Tokens one workflow run may spend; 0 = no limit. */
  runTokenBudget: number;
  /** Tokens one UTC day may spend; 0 = no limit. */
  dayTokenBudget: number;
  /** Cost one workflow run may spend; 0 = no limit. */
  runCostBudget: number;
  /** Cost one UTC day may spend; 0 = no limit. */
  dayCostBudget: number;
}

/** Everything a mesh process needs to know. */
export interface MeshConfig {
  /** Repository root. */
  root: string;
  /** Local data directory: dev tokens, the auth file, certificates. */
  dataDir: string;
  /** Where each server is reached (`http://host:port` or `https://…`). */
  serverUrls: Record<ServerName, string>;
  /** Host to bind to; defaults to the host of the server's own URL. */
  listenHost: string | undefined;
  /** Agent id → server hosting it. */
  placement: Record<string, ServerName>;
  /** Path of the auth file (principals, token hashes, grants). */
  authFile: string;
  /** Bearer token this process presents to other servers; undefined = read the dev token file. */
  token: string | undefined;
  /** TLS between servers, when configured. */
  tls: TlsConfig | undefined;
  /** Per-caller token bucket: sustained requests per second. */
  rateLimitPerSecond: number;
  /** Per-caller token bucket: burst size. */
  rateLimitBurst: number;
  /** Largest request or response message accepted, in bytes. */
  maxMessageBytes: number;
  /**
   * Memory the requests being decoded and served at once may take, estimated from their size
   * (lib/server/admission.ts); a request that does not fit waits for none: RESOURCE_EXHAUSTED.
   */
  requestMemoryBytes: number;
  /** Longest a skill call runs when its skill declares no time budget of its own. */
  skillTimeBudgetMs: number;
  /** Timeouts and connection caps of the listening port. */
  http: HttpConfig;
  /** Deadline applied to outgoing skill calls that have none. */
  defaultTimeoutMs: number;
  /** Longest a SIGTERM waits for in-flight calls before exiting. */
  shutdownGraceMs: number;
  /** Latency budget of one cross-server handoff. */
  handoffBudgetMs: number;
  /** Protocol servers use to call each other. */
  clientProtocol: "connect" | "grpc";
  /** Retry policy for idempotent skills. */
  retry: RetryConfig;
  /** Circuit breaker policy. */
  breaker: BreakerConfig;
  /** OTLP/HTTP endpoint; traces and metrics are exported there when set. */
  otlpEndpoint: string | undefined;
  /** Log level. */
  logLevel: "debug" | "info" | "warn" | "error";
  /** PostgreSQL URL; undefined = the local default, else an embedded server (see lib/infra). */
  databaseUrl: string | undefined;
  /** NATS URL; undefined = the local default, else an embedded nats-server (see lib/infra). */
  natsUrl: string | undefined;
  /** Prefix of NATS subjects and stream names (isolates deployments sharing a NATS). */
  natsPrefix: string;
  /** auto: local services, else embedded; embedded: always embedded; external: never start any. */
  infraMode: "auto" | "embedded" | "external";
  /** How often timers (retry backoff, approval and event timeouts) are checked. */
  workflowTickMs: number;
  /** How long a workflow task may go unacknowledged before another instance gets it (crash recovery time). */
  workflowAckWaitMs: number;
  /** Extra workflow definition modules to load. */
  workflowModules: string[];
  /** Stored CRM segments with windows or relative dates: least time between scheduled re-evaluations (ms). */
  segmentRecheckMinMs: number;
  /** … and most time between them (ms): the safety net for changes no event announced. */
  segmentRecheckMaxMs: number;
  /** … and segments re-evaluated per scheduler round. */
  segmentRecheckBatch: number;
  /** Folder of the built directory site, served by the server hosting the SEO agent. */
  siteDir: string;
  /** Public origin of the directory site (canonical URLs, sitemap). */
  siteOrigin: string;
  /** SMTP server the Email agent sends through (`smtp://user:pass@host:587`, `smtps://…`); undefined = the outbox folder. */
  smtpUrl: string | undefined;
  /** Social publishing webhook (http or https URL); undefined = posts are recorded in the outbox table. */
  socialWebhookUrl: string | undefined;
  /** HMAC-SHA256 secret the webhook's signature is made with (required with the URL; never logged). */
  socialWebhookSecret: string | undefined;
  /** An HTTP enrichment provider the CRM asks after its built-in ones; undefined = built-in only. */
  enrichmentHttp:
    | { name: string; baseUrl: string; apiKey: string | undefined; apiKeyHeader: string; timeoutMs: number }
    | undefined;
  /** DKIM signing of outgoing mail: all three of MESH_DKIM_DOMAIN, _SELECTOR, _PRIVATE_KEY_FILE, or none. */
  emailDkimDomain: string | undefined;
  emailDkimSelector: string | undefined;
  /** PEM of the DKIM private key (read from MESH_DKIM_PRIVATE_KEY_FILE; never logged). */
  emailDkimPrivateKey: string | undefined;
  /** Key of the one-click unsubscribe tokens (≥ 16 characters); undefined = one generated and stored once. */
  emailUnsubscribeSecret: string | undefined;
  /** Folder the Email agent writes messages to, as `.eml` files, when no SMTP server is configured. */
  emailOutboxDir: string;
  /** Default From of outgoing email: `Display Name <address>` or a bare address. */
  emailFrom: string;
  /** Chromium binary for Lighthouse (CHROME_PATH); undefined = look in the usual places. */
  chromePath: string | undefined;
  /** The model provider: an OpenAI-compatible API or the built-in writer, with token and cost budgets. */
  model: ModelConfig;
  /**
   * Node id of this instance in hybrid logical clocks (MESH_NODE_ID); undefined until the server
   * resolves one unique per instance and stable across restarts (see lib/cache `resolveNodeId`).
   */
  nodeId: string | undefined;
}

/** Thrown when configuration is invalid; the message names the variable. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

type Env = Readonly<Record<string, string | undefined>>;

function envValue(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === "" ? undefined : v.trim();
}

function envInt(env: Env, name: string, def: number, min: number, max: number): number {
  const raw = envValue(env, name);
  if (raw === undefined) return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got "${raw}"`);
  }
  return n;
}

function envNumber(env: Env, name: string, def: number, min: number, max: number): number {
  const raw = envValue(env, name);
  if (raw === undefined) return def;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new ConfigError(`${name} must be a number between ${min} and ${max}, got "${raw}"`);
  }
  return n;
}

function envEnum<T extends string>(env: Env, name: string, def: T, allowed: readonly T[]): T {
  const raw = envValue(env, name);
  if (raw === undefined) return def;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name} must be one of ${allowed.join(", ")}, got "${raw}"`);
  }
  return raw as T;
}

function envPattern(env: Env, name: string, def: string, pattern: RegExp): string {
  const raw = envValue(env, name);
  if (raw === undefined) return def;
  if (!pattern.test(raw)) throw new ConfigError(`${name} must match ${pattern}, got "${raw}"`);
  return raw;
}

function parseHttp(env: Env): HttpConfig {
  const http: HttpConfig = {
    headersTimeoutMs: envInt(env, "MESH_HTTP_HEADERS_TIMEOUT_MS", 10_000, 1, 3_600_000),
    requestTimeoutMs: envInt(env, "MESH_HTTP_REQUEST_TIMEOUT_MS", 300_000, 1, 86_400_000),
    idleTimeoutMs: envInt(env, "MESH_HTTP_IDLE_TIMEOUT_MS", 120_000, 1, 86_400_000),
    maxConnectionsPerAddress: envInt(env, "MESH_MAX_CONNECTIONS_PER_ADDRESS", 256, 1, 1_000_000),
    maxConnections: envInt(env, "MESH_MAX_CONNECTIONS", 10_000, 1, 1_000_000),
  };
  if (http.headersTimeoutMs > http.requestTimeoutMs) {
    throw new ConfigError(
      `MESH_HTTP_HEADERS_TIMEOUT_MS (${http.headersTimeoutMs}) must not exceed MESH_HTTP_REQUEST_TIMEOUT_MS (${http.requestTimeoutMs})`,
    );
  }
  return http;
}

function parseUrl(name: string, raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ConfigError(`${name} must be a URL such as http://127.0.0.1:7101, got "${raw}"`);
  }
  // URL drops default ports (https://h:443 → port ""), so look for the port in the raw text.
  const hasPort = u.port !== "" || /^[a-z]+:\/\/[^/]*:\d+\/?$/i.test(raw);
  if ((u.protocol !== "http:" && u.protocol !== "https:") || !hasPort || u.pathname !== "/") {
    throw new ConfigError(`${name} must be http(s)://host:port with no path, got "${raw}"`);
  }
  return `${u.protocol}//${u.hostname.includes(":") ? `[${u.hostname}]` : u.hostname}:${u.port || (u.protocol === "https:" ? 443 : 80)}`;
}

/** Checks an SMTP connection URL (nodemailer's form); the password is never echoed in errors. */
function parseSmtpUrl(name: string, raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ConfigError(`${name} must be a URL such as smtp://127.0.0.1:2525 or smtps://user:pass@mail.example.com`);
  }
  if ((u.protocol !== "smtp:" && u.protocol !== "smtps:") || u.hostname === "") {
    throw new ConfigError(`${name} must be smtp://host[:port] or smtps://host[:port], got ${u.protocol}//${u.host}`);
  }
  return raw;
}

/** The social publishing webhook: an http(s) URL and its signing secret (at least 16 characters). */
function parseWebhook(env: NodeJS.ProcessEnv): Pick<MeshConfig, "socialWebhookUrl" | "socialWebhookSecret"> {
  const url = envValue(env, "MESH_SOCIAL_WEBHOOK_URL");
  const secret = envValue(env, "MESH_SOCIAL_WEBHOOK_SECRET");
  if (url === undefined) return { socialWebhookUrl: undefined, socialWebhookSecret: secret };
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`MESH_SOCIAL_WEBHOOK_URL must be an http(s) URL, got "${url}"`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new ConfigError(`MESH_SOCIAL_WEBHOOK_URL must be an http(s) URL, got ${u.protocol}//${u.host}`);
  }
  if (secret === undefined || secret.length < 16) {
    throw new ConfigError(
      "MESH_SOCIAL_WEBHOOK_SECRET (at least 16 characters) is required with MESH_SOCIAL_WEBHOOK_URL",
    );
  }
  return { socialWebhookUrl: url, socialWebhookSecret: secret };
}

/** The CRM's HTTP enrichment provider, when MESH_ENRICHMENT_HTTP_URL is set. */
function parseEnrichmentHttp(env: Env): MeshConfig["enrichmentHttp"] {
  const url = envValue(env, "MESH_ENRICHMENT_HTTP_URL");
  if (url === undefined) return undefined;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`MESH_ENRICHMENT_HTTP_URL must be an http(s) URL, got "${url}"`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new ConfigError(`MESH_ENRICHMENT_HTTP_URL must be an http(s) URL, got ${u.protocol}//${u.host}`);
  }
  return {
    name: envPattern(env, "MESH_ENRICHMENT_HTTP_NAME", "http", /^[a-z0-9][a-z0-9_.-]{0,63}$/),
    baseUrl: url,
    apiKey: envValue(env, "MESH_ENRICHMENT_HTTP_API_KEY"),
    apiKeyHeader: envPattern(env, "MESH_ENRICHMENT_HTTP_API_KEY_HEADER", "x-api-key", /^[A-Za-z0-9-]{1,64}$/),
    timeoutMs: envInt(env, "MESH_ENRICHMENT_HTTP_TIMEOUT_MS", 5_000, 100, 120_000),
  };
}

/** A secret of at least 16 characters, or undefined; never echoed in errors. */
function parseSecret(env: Env, name: string): string | undefined {
  const raw = envValue(env, name);
  if (raw !== undefined && raw.length < 16) throw new ConfigError(`${name} must be at least 16 characters`);
  return raw;
}

/** DKIM settings: all three or none; the key must be a private key PEM. */
function parseDkim(env: Env): Pick<MeshConfig, "emailDkimDomain" | "emailDkimSelector" | "emailDkimPrivateKey"> {
  const domain = envValue(env, "MESH_DKIM_DOMAIN");
  const selector = envValue(env, "MESH_DKIM_SELECTOR");
  const file = envValue(env, "MESH_DKIM_PRIVATE_KEY_FILE");
  const set = [domain, selector, file].filter((v) => v !== undefined).length;
  if (set === 0) return { emailDkimDomain: undefined, emailDkimSelector: undefined, emailDkimPrivateKey: undefined };
  if (set !== 3) {
    throw new ConfigError(
      "MESH_DKIM_DOMAIN, MESH_DKIM_SELECTOR and MESH_DKIM_PRIVATE_KEY_FILE go together: set all three or none",
    );
  }
  let pem: string;
  try {
    pem = readFileSync(file as string, "utf8");
    createPrivateKey(pem);
  } catch (err) {
    throw new ConfigError(`MESH_DKIM_PRIVATE_KEY_FILE must name a readable private key PEM: ${(err as Error).message}`);
  }
  return { emailDkimDomain: domain, emailDkimSelector: selector, emailDkimPrivateKey: pem };
}

/** The model provider's settings; the API key is never echoed in errors. */
function parseModel(env: Env): ModelConfig {
  const raw = envValue(env, "MESH_MODEL_BASE_URL");
  let baseUrl: string | undefined;
  if (raw !== undefined) {
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw new ConfigError(
        `MESH_MODEL_BASE_URL must be an http(s) URL such as http://127.0.0.1:8080/v1, got "${raw}"`,
      );
    }
    if ((u.protocol !== "http:" && u.protocol !== "https:") || u.search !== "" || u.hash !== "") {
      throw new ConfigError(`MESH_MODEL_BASE_URL must be an http(s) URL with no query, got ${u.protocol}//${u.host}`);
    }
    baseUrl = u.toString().replace(/\/+$/, "");
  }
  const name = envPattern(env, "MESH_MODEL_NAME", "", /^[\x21-\x7e]{1,255}$/);
  if (baseUrl !== undefined && name === "") {
    throw new ConfigError("MESH_MODEL_NAME is required with MESH_MODEL_BASE_URL");
  }
  let apiKey = envValue(env, "MESH_MODEL_API_KEY");
  const keyFile = envValue(env, "MESH_MODEL_API_KEY_FILE");
  if (keyFile !== undefined) {
    if (apiKey !== undefined) throw new ConfigError("set MESH_MODEL_API_KEY or MESH_MODEL_API_KEY_FILE, not both");
    try {
      apiKey = readFileSync(keyFile, "utf8").trim();
    } catch (err) {
      throw new ConfigError(`MESH_MODEL_API_KEY_FILE must name a readable file: ${(err as Error).message}`);
    }
    if (apiKey === "") throw new ConfigError("MESH_MODEL_API_KEY_FILE names an empty file");
  }
  return {
    baseUrl,
    name: baseUrl === undefined ? name || "builtin-writer" : name,
    apiKey,
    timeoutMs: envInt(env, "MESH_MODEL_TIMEOUT_MS", 60_000, 100, 3_600_000),
    maxAttempts: envInt(env, "MESH_MODEL_MAX_ATTEMPTS", 4, 1, 10),
    maxTokens: envInt(env, "MESH_MODEL_MAX_TOKENS", 2048, 1, 1_000_000),
    pricePromptPer1k: envNumber(env, "MESH_MODEL_PRICE_PROMPT_PER_1K", 0, 0, 1e6),
    priceCompletionPer1k: envNumber(env, "MESH_MODEL_PRICE_COMPLETION_PER_1K", 0, 0, 1e6),
    runTokenBudget: envInt(env, "MESH_MODEL_RUN_TOKEN_BUDGET", 200_000, 0, Number.MAX_SAFE_INTEGER),
    dayTokenBudget: envInt(env, "MESH_MODEL_DAY_TOKEN_BUDGET", 2_000_000, 0, Number.MAX_SAFE_INTEGER),
    runCostBudget: envNumber(env, "MESH_MODEL_RUN_COST_BUDGET", 0, 0, 1e9),
    dayCostBudget: envNumber(env, "MESH_MODEL_DAY_COST_BUDGET", 0, 0, 1e9),
  };
}

/** Parses `research=content,writing=content,…`; unknown agents or servers are errors. */
function parsePlacement(name: string, raw: string | undefined): Record<string, ServerName> {
  const placement: Record<string, ServerName> = { ...defaultPlacement };
  if (raw === undefined) return placement;
  for (const part of raw
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [agent, server] = part.split("=").map((s) => s.trim());
    if (!agent || !server || !(agent in defaultPlacement)) {
      throw new ConfigError(
        `${name}: "${part}" is not agent=server with a known agent (${Object.keys(defaultPlacement).join(", ")})`,
      );
    }
    if (!(serverNames as readonly string[]).includes(server)) {
      throw new ConfigError(`${name}: server "${server}" must be one of ${serverNames.join(", ")}`);
    }
    placement[agent] = server as ServerName;
  }
  return placement;
}

/** Loads configuration: `overrides` > `env` > defaults. */
export function loadConfig(overrides: Partial<MeshConfig> = {}, env: Env = process.env): MeshConfig {
  const root = overrides.root ?? resolve(envValue(env, "MESH_ROOT") ?? join(import.meta.dirname, "..", ".."));
  const dataDir = overrides.dataDir ?? resolve(envValue(env, "MESH_DATA_DIR") ?? join(root, ".mesh", "data"));
  const tlsDir = envValue(env, "MESH_TLS_DIR");
  const ca = envValue(env, "MESH_TLS_CA") ?? (tlsDir === undefined ? undefined : join(tlsDir, "ca.crt"));
  const cert = envValue(env, "MESH_TLS_CERT");
  const key = envValue(env, "MESH_TLS_KEY");
  let tls: TlsConfig | undefined;
  if (ca !== undefined) {
    if ((cert === undefined) !== (key === undefined))
      throw new ConfigError("MESH_TLS_CERT and MESH_TLS_KEY must be set together");
    if (cert === undefined && tlsDir === undefined)
      throw new ConfigError("MESH_TLS_CA needs MESH_TLS_CERT and MESH_TLS_KEY (or MESH_TLS_DIR)");
    tls = {
      caFile: resolve(ca),
      certFile: cert && resolve(cert),
      keyFile: key && resolve(key),
      dir: tlsDir && resolve(tlsDir),
    };
  } else if (cert !== undefined || key !== undefined) {
    throw new ConfigError("MESH_TLS_CERT / MESH_TLS_KEY need MESH_TLS_CA (or MESH_TLS_DIR)");
  }
  if (overrides.tls !== undefined) tls = overrides.tls;
  const scheme = tls ? "https" : "http";
  const serverUrls = {} as Record<ServerName, string>;
  for (const s of overrides.serverUrls ? [] : serverNames) {
    const name = `MESH_${s.toUpperCase()}_URL`;
    const raw = envValue(env, name);
    serverUrls[s] = raw === undefined ? `${scheme}://127.0.0.1:${defaultPorts[s]}` : parseUrl(name, raw);
  }
  const config: MeshConfig = {
    root,
    dataDir,
    serverUrls: overrides.serverUrls ?? serverUrls,
    listenHost: envValue(env, "MESH_LISTEN_HOST"),
    placement: overrides.placement ?? parsePlacement("MESH_PLACEMENT", envValue(env, "MESH_PLACEMENT")),
    authFile: resolve(envValue(env, "MESH_AUTH_FILE") ?? join(dataDir, "auth.json")),
    token: envValue(env, "MESH_TOKEN"),
    tls,
    rateLimitPerSecond: envNumber(env, "MESH_RATE_LIMIT_RPS", 10_000, 0.001, 1e7),
    rateLimitBurst: envInt(env, "MESH_RATE_LIMIT_BURST", 20_000, 1, 1e7),
    maxMessageBytes: envInt(env, "MESH_MAX_MESSAGE_BYTES", 16 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    requestMemoryBytes: envInt(
      env,
      "MESH_REQUEST_MEMORY_BYTES",
      Math.floor(getHeapStatistics().heap_size_limit * 0.4),
      1024 * 1024,
      Number.MAX_SAFE_INTEGER,
    ),
    skillTimeBudgetMs: envInt(env, "MESH_SKILL_TIME_BUDGET_MS", 120_000, 100, 86_400_000),
    http: parseHttp(env),
    defaultTimeoutMs: envInt(env, "MESH_DEFAULT_TIMEOUT_MS", 30_000, 1, 3_600_000),
    shutdownGraceMs: envInt(env, "MESH_SHUTDOWN_GRACE_MS", 10_000, 0, 600_000),
    handoffBudgetMs: envNumber(env, "MESH_HANDOFF_BUDGET_MS", 200, 1, 600_000),
    clientProtocol: envEnum(env, "MESH_CLIENT_PROTOCOL", "connect", ["connect", "grpc"] as const),
    retry: {
      maxAttempts: envInt(env, "MESH_RETRY_MAX_ATTEMPTS", 4, 1, 20),
      baseDelayMs: envInt(env, "MESH_RETRY_BASE_DELAY_MS", 50, 1, 60_000),
      maxDelayMs: envInt(env, "MESH_RETRY_MAX_DELAY_MS", 2_000, 1, 600_000),
      budgetRatio: envNumber(env, "MESH_RETRY_BUDGET_RATIO", 0.2, 0, 10),
      budgetMinPerSecond: envNumber(env, "MESH_RETRY_BUDGET_MIN_PER_SECOND", 10, 0, 1e6),
    },
    breaker: {
      failureThreshold: envInt(env, "MESH_BREAKER_FAILURES", 5, 1, 1000),
      halfOpenAfterMs: envInt(env, "MESH_BREAKER_HALF_OPEN_AFTER_MS", 5_000, 1, 3_600_000),
    },
    otlpEndpoint: envValue(env, "OTEL_EXPORTER_OTLP_ENDPOINT"),
    logLevel: envEnum(env, "MESH_LOG_LEVEL", "info", ["debug", "info", "warn", "error"] as const),
    databaseUrl: envValue(env, "DATABASE_URL"),
    natsUrl: envValue(env, "NATS_URL"),
    natsPrefix: envPattern(env, "MESH_NATS_PREFIX", "mesh", /^[a-z][a-z0-9_-]{0,30}$/),
    infraMode: envEnum(env, "MESH_INFRA", "auto", ["auto", "embedded", "external"] as const),
    workflowTickMs: envInt(env, "MESH_WORKFLOW_TICK_MS", 250, 10, 60_000),
    workflowAckWaitMs: envInt(env, "MESH_WORKFLOW_ACK_WAIT_MS", 15_000, 1000, 3_600_000),
    segmentRecheckMinMs: envInt(env, "MESH_SEGMENT_RECHECK_MIN_MS", 60_000, 0, 86_400_000),
    segmentRecheckMaxMs: envInt(env, "MESH_SEGMENT_RECHECK_MAX_MS", 900_000, 1000, 7 * 86_400_000),
    segmentRecheckBatch: envInt(env, "MESH_SEGMENT_RECHECK_BATCH", 20, 1, 1000),
    siteDir: resolve(envValue(env, "MESH_SITE_DIR") ?? join(dataDir, "site")),
    siteOrigin: envValue(env, "MESH_SITE_ORIGIN") ?? "http://127.0.0.1:7103",
    smtpUrl: parseSmtpUrl("MESH_SMTP_URL", envValue(env, "MESH_SMTP_URL")),
    ...parseWebhook(env),
    ...parseDkim(env),
    emailUnsubscribeSecret: parseSecret(env, "MESH_EMAIL_UNSUBSCRIBE_SECRET"),
    enrichmentHttp: parseEnrichmentHttp(env),
    emailOutboxDir: resolve(envValue(env, "MESH_EMAIL_OUTBOX_DIR") ?? join(dataDir, "mail-outbox")),
    emailFrom: envPattern(
      env,
      "MESH_EMAIL_FROM",
      "Marketing Mesh <noreply@localhost>",
      /^(?:[^<>\r\n"]*<[^<>\s@]+@[^<>\s@]+>|[^<>\s@]+@[^<>\s@]+)$/,
    ),
    chromePath: envValue(env, "CHROME_PATH"),
    model: parseModel(env),
    nodeId: envPattern(env, "MESH_NODE_ID", "", /^[A-Za-z0-9._:-]{1,64}$/) || undefined,
    workflowModules: (envValue(env, "MESH_WORKFLOWS") ?? "")
      .split(",")
      .map((x) => x.trim())
      .filter(Boolean),
  };
  return { ...config, ...overrides };
}

/** PEM file paths `server` (or a client identity) uses, or undefined without TLS. */
export function tlsFilesFor(
  tls: TlsConfig | undefined,
  identity: string,
): { ca: string; cert: string; key: string } | undefined {
  if (tls === undefined) return undefined;
  const cert = tls.certFile ?? (tls.dir && join(tls.dir, `${identity}.crt`));
  const key = tls.keyFile ?? (tls.dir && join(tls.dir, `${identity}.key`));
  if (cert === undefined || key === undefined)
    throw new ConfigError("TLS needs MESH_TLS_CERT and MESH_TLS_KEY or MESH_TLS_DIR");
  return { ca: tls.caFile, cert, key };
}

/** The agents a server hosts under `placement`. */
export function agentsOn(placement: Record<string, ServerName>, server: ServerName): string[] {
  return Object.entries(placement)
    .filter(([, s]) => s === server)
    .map(([a]) => a)
    .sort();
}
