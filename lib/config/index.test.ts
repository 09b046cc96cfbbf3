import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { agentsOn, ConfigError, defaultPlacement, loadConfig, type TlsConfig, tlsFilesFor } from "./index.ts";

const repoRoot = resolve(import.meta.dirname, "..", "..");

/** The error `fn` throws; fails when it throws nothing. */
function thrownBy(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected an error");
}

describe("loadConfig defaults", () => {
  const config = loadConfig({}, {});

  it("serves the three servers on 7101, 7102 and 7103 over plain HTTP", () => {
    expect(config.serverUrls).toEqual({
      content: "http://127.0.0.1:7101",
      operations: "http://127.0.0.1:7102",
      technical: "http://127.0.0.1:7103",
    });
    expect(config.tls).toBeUndefined();
  });

  it("places the agents where their proto default_server options say", () => {
    expect(config.placement).toEqual({
      research: "content",
      writing: "content",
      optimization: "content",
      crm: "operations",
      email: "operations",
      social: "operations",
      seo: "technical",
      data: "technical",
      reporting: "technical",
      system: "technical",
    });
  });

  it("keeps data under the repository's .mesh directory", () => {
    expect(config.root).toBe(repoRoot);
    expect(config.dataDir).toBe(join(repoRoot, ".mesh", "data"));
    expect(config.authFile).toBe(join(repoRoot, ".mesh", "data", "auth.json"));
  });

  it("uses the documented defaults for timeouts, retries and the breaker", () => {
    expect(config.token).toBeUndefined();
    expect(config.listenHost).toBeUndefined();
    expect(config.otlpEndpoint).toBeUndefined();
    // 16 MiB = 16 × 1024 × 1024.
    expect(config.maxMessageBytes).toBe(16_777_216);
    expect(config.defaultTimeoutMs).toBe(30_000);
    expect(config.handoffBudgetMs).toBe(200);
    expect(config.clientProtocol).toBe("connect");
    expect(config.logLevel).toBe("info");
    expect(config.retry).toEqual({
      maxAttempts: 4,
      baseDelayMs: 50,
      maxDelayMs: 2000,
      budgetRatio: 0.2,
      budgetMinPerSecond: 10,
    });
    expect(config.breaker).toEqual({ failureThreshold: 5, halfOpenAfterMs: 5000 });
  });
});

describe("loadConfig precedence", () => {
  it("reads the environment", () => {
    const config = loadConfig(
      {},
      {
        MESH_DATA_DIR: "/srv/mesh",
        MESH_TOKEN: " s3cret ",
        MESH_RATE_LIMIT_BURST: "20",
        MESH_RETRY_BUDGET_RATIO: "0.5",
        MESH_CLIENT_PROTOCOL: "grpc",
        MESH_LOG_LEVEL: "debug",
      },
    );
    expect(config.dataDir).toBe(resolve("/srv/mesh"));
    expect(config.authFile).toBe(resolve("/srv/mesh/auth.json"));
    // Surrounding whitespace is trimmed.
    expect(config.token).toBe("s3cret");
    expect(config.rateLimitBurst).toBe(20);
    expect(config.retry.budgetRatio).toBe(0.5);
    expect(config.clientProtocol).toBe("grpc");
    expect(config.logLevel).toBe("debug");
  });

  it("counts empty and blank environment values as unset", () => {
    const config = loadConfig(
      {},
      {
        MESH_CONTENT_URL: "",
        MESH_RATE_LIMIT_BURST: "   ",
        MESH_TOKEN: "",
        MESH_PLACEMENT: "",
        MESH_TLS_DIR: "",
        MESH_LOG_LEVEL: " ",
      },
    );
    expect(config.serverUrls.content).toBe("http://127.0.0.1:7101");
    expect(config.rateLimitBurst).toBe(loadConfig({}, {}).rateLimitBurst);
    expect(config.token).toBeUndefined();
    expect(config.placement).toEqual(defaultPlacement);
    expect(config.tls).toBeUndefined();
    expect(config.logLevel).toBe("info");
  });

  it("lets explicit options beat the environment", () => {
    const serverUrls = { content: "http://a:1", operations: "http://b:2", technical: "http://c:3" };
    const config = loadConfig(
      { rateLimitBurst: 10, token: "explicit", dataDir: "/opt/data", serverUrls },
      {
        MESH_RATE_LIMIT_BURST: "20",
        MESH_TOKEN: "from-env",
        MESH_DATA_DIR: "/srv/mesh",
        MESH_CONTENT_URL: "http://x:9",
      },
    );
    expect(config.rateLimitBurst).toBe(10);
    expect(config.token).toBe("explicit");
    expect(config.dataDir).toBe("/opt/data");
    // The auth file follows the explicit data directory.
    expect(config.authFile).toBe(resolve("/opt/data/auth.json"));
    expect(config.serverUrls).toEqual(serverUrls);
  });
});

describe("loadConfig MESH_PLACEMENT", () => {
  it("moves the named agents and keeps the rest", () => {
    const config = loadConfig({}, { MESH_PLACEMENT: "seo=content, crm = technical,," });
    expect(config.placement.seo).toBe("content");
    expect(config.placement.crm).toBe("technical");
    expect(config.placement.research).toBe("content");
    expect(config.placement.email).toBe("operations");
  });

  it.each([
    ["an unknown agent", "marketing=content"],
    ["an unknown server", "seo=elsewhere"],
    ["a part without =", "seo"],
    ["a part without a server", "seo="],
  ])("rejects %s and names MESH_PLACEMENT", (_what, raw) => {
    const err = thrownBy(() => loadConfig({}, { MESH_PLACEMENT: raw }));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(/^MESH_PLACEMENT: /);
  });
});

describe("loadConfig numbers", () => {
  it.each([
    ["MESH_RATE_LIMIT_BURST", "1.5"],
    ["MESH_RATE_LIMIT_BURST", "0"],
    ["MESH_RATE_LIMIT_BURST", "many"],
    ["MESH_RETRY_MAX_ATTEMPTS", "21"],
    ["MESH_DEFAULT_TIMEOUT_MS", "-5"],
    ["MESH_MAX_MESSAGE_BYTES", "100"],
  ])("rejects %s=%j and names the variable", (name, raw) => {
    const err = thrownBy(() => loadConfig({}, { [name]: raw }));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain(`${name} must be an integer between`);
    expect(err.message).toContain(`"${raw}"`);
  });

  it("accepts the bounds of an integer range", () => {
    expect(loadConfig({}, { MESH_RETRY_MAX_ATTEMPTS: "1" }).retry.maxAttempts).toBe(1);
    expect(loadConfig({}, { MESH_RETRY_MAX_ATTEMPTS: "20" }).retry.maxAttempts).toBe(20);
  });

  it("rejects a non-finite or out-of-range number and names the variable", () => {
    const err = thrownBy(() => loadConfig({}, { MESH_RETRY_BUDGET_RATIO: "Infinity" }));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain("MESH_RETRY_BUDGET_RATIO must be a number between 0 and 10");
    expect(() => loadConfig({}, { MESH_RATE_LIMIT_RPS: "0" })).toThrow(/MESH_RATE_LIMIT_RPS/);
  });

  it("rejects an unknown enum value and names the variable", () => {
    const err = thrownBy(() => loadConfig({}, { MESH_CLIENT_PROTOCOL: "http" }));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(/^MESH_CLIENT_PROTOCOL must be one of connect, grpc/);
  });
});

describe("loadConfig server URLs", () => {
  it("accepts http(s)://host:port and drops a bare trailing slash", () => {
    expect(loadConfig({}, { MESH_CONTENT_URL: "http://10.0.0.5:9000" }).serverUrls.content).toBe(
      "http://10.0.0.5:9000",
    );
    expect(loadConfig({}, { MESH_CONTENT_URL: "https://content.mesh.internal:8443/" }).serverUrls.content).toBe(
      "https://content.mesh.internal:8443",
    );
    expect(loadConfig({}, { MESH_OPERATIONS_URL: "http://ops:8080/" }).serverUrls.operations).toBe("http://ops:8080");
  });

  it.each([
    ["not a URL", "content"],
    ["no port", "http://content.mesh"],
    ["a path", "http://content.mesh:7101/api"],
    ["another scheme", "ftp://content.mesh:21"],
  ])("rejects %s and names MESH_CONTENT_URL", (_what, raw) => {
    const err = thrownBy(() => loadConfig({}, { MESH_CONTENT_URL: raw }));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(/^MESH_CONTENT_URL must be/);
  });
});

describe("loadConfig TLS", () => {
  it("takes the CA from MESH_TLS_DIR and switches default URLs to https", () => {
    const config = loadConfig({}, { MESH_TLS_DIR: "/etc/mesh/tls" });
    expect(config.tls).toEqual({
      caFile: resolve("/etc/mesh/tls/ca.crt"),
      certFile: undefined,
      keyFile: undefined,
      dir: resolve("/etc/mesh/tls"),
    });
    expect(config.serverUrls).toEqual({
      content: "https://127.0.0.1:7101",
      operations: "https://127.0.0.1:7102",
      technical: "https://127.0.0.1:7103",
    });
  });

  it("accepts an explicit CA, certificate and key", () => {
    const config = loadConfig(
      {},
      { MESH_TLS_CA: "/pki/ca.pem", MESH_TLS_CERT: "/pki/me.pem", MESH_TLS_KEY: "/pki/me.key" },
    );
    expect(config.tls).toEqual({
      caFile: resolve("/pki/ca.pem"),
      certFile: resolve("/pki/me.pem"),
      keyFile: resolve("/pki/me.key"),
      dir: undefined,
    });
    expect(config.serverUrls.technical).toBe("https://127.0.0.1:7103");
  });

  it.each([
    [
      "a certificate without a key",
      { MESH_TLS_DIR: "/tls", MESH_TLS_CERT: "/tls/me.crt" },
      /MESH_TLS_CERT and MESH_TLS_KEY/,
    ],
    [
      "a key without a certificate",
      { MESH_TLS_CA: "/ca.pem", MESH_TLS_KEY: "/me.key" },
      /MESH_TLS_CERT and MESH_TLS_KEY/,
    ],
    ["a CA alone", { MESH_TLS_CA: "/ca.pem" }, /MESH_TLS_CA needs MESH_TLS_CERT/],
    ["a certificate and key without a CA", { MESH_TLS_CERT: "/me.crt", MESH_TLS_KEY: "/me.key" }, /need MESH_TLS_CA/],
  ])("rejects %s", (_what, env, message) => {
    const err = thrownBy(() => loadConfig({}, env));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(message);
  });
});

describe("tlsFilesFor", () => {
  it("is undefined without TLS", () => {
    expect(tlsFilesFor(undefined, "content")).toBeUndefined();
  });

  it("names the identity's files in the TLS directory", () => {
    const tls: TlsConfig = { caFile: "/tls/ca.crt", certFile: undefined, keyFile: undefined, dir: "/tls" };
    expect(tlsFilesFor(tls, "operations")).toEqual({
      ca: "/tls/ca.crt",
      cert: join("/tls", "operations.crt"),
      key: join("/tls", "operations.key"),
    });
  });

  it("prefers explicit certificate and key files over the directory", () => {
    const tls: TlsConfig = { caFile: "/tls/ca.crt", certFile: "/pki/me.pem", keyFile: "/pki/me.key", dir: "/tls" };
    expect(tlsFilesFor(tls, "operations")).toEqual({ ca: "/tls/ca.crt", cert: "/pki/me.pem", key: "/pki/me.key" });
  });

  it("fails when neither files nor a directory are given", () => {
    const tls: TlsConfig = { caFile: "/tls/ca.crt", certFile: undefined, keyFile: undefined, dir: undefined };
    expect(() => tlsFilesFor(tls, "content")).toThrow(ConfigError);
  });
});

describe("agentsOn", () => {
  it("lists the agents a server hosts, sorted", () => {
    expect(agentsOn({ ...defaultPlacement }, "content")).toEqual(["optimization", "research", "writing"]);
    expect(agentsOn({ ...defaultPlacement }, "operations")).toEqual(["crm", "email", "social"]);
    expect(agentsOn({ ...defaultPlacement }, "technical")).toEqual(["data", "reporting", "seo", "system"]);
  });

  it("follows a custom placement", () => {
    const placement = loadConfig({}, { MESH_PLACEMENT: "seo=content,research=technical" }).placement;
    expect(agentsOn(placement, "content")).toEqual(["optimization", "seo", "writing"]);
    expect(agentsOn(placement, "technical")).toEqual(["data", "reporting", "research", "system"]);
  });
});

describe("loadConfig social webhook", () => {
  it("posts to the outbox by default and to a webhook with its secret when set", () => {
    expect(loadConfig({}, {}).socialWebhookUrl).toBeUndefined();
    const config = loadConfig(
      {},
      { MESH_SOCIAL_WEBHOOK_URL: "https://hooks.example.com/social", MESH_SOCIAL_WEBHOOK_SECRET: "s".repeat(32) },
    );
    expect(config.socialWebhookUrl).toBe("https://hooks.example.com/social");
    expect(config.socialWebhookSecret).toBe("s".repeat(32));
  });

  it.each([
    [{ MESH_SOCIAL_WEBHOOK_URL: "https://hooks.example.com/social" }, /MESH_SOCIAL_WEBHOOK_SECRET .* is required/],
    [
      { MESH_SOCIAL_WEBHOOK_URL: "https://hooks.example.com/social", MESH_SOCIAL_WEBHOOK_SECRET: "short" },
      /MESH_SOCIAL_WEBHOOK_SECRET \(at least 16 characters\)/,
    ],
    [
      { MESH_SOCIAL_WEBHOOK_URL: "ftp://hooks.example.com", MESH_SOCIAL_WEBHOOK_SECRET: "s".repeat(32) },
      /http\(s\) URL/,
    ],
  ])("refuses an incomplete webhook setting %j without echoing the secret", (env, message) => {
    const err = thrownBy(() => loadConfig({}, env));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(message);
    expect(err.message).not.toContain("s".repeat(32));
  });
});

describe("loadConfig enrichment provider", () => {
  it("adds an HTTP enrichment provider only when its URL is set, and checks it", () => {
    expect(loadConfig({}, {}).enrichmentHttp).toBeUndefined();
    expect(
      loadConfig({}, { MESH_ENRICHMENT_HTTP_URL: "https://enrich.example.com/v1", MESH_ENRICHMENT_HTTP_API_KEY: "k" })
        .enrichmentHttp,
    ).toEqual({
      name: "http",
      baseUrl: "https://enrich.example.com/v1",
      apiKey: "k",
      apiKeyHeader: "x-api-key",
      timeoutMs: 5000,
    });
    expect(() => loadConfig({}, { MESH_ENRICHMENT_HTTP_URL: "file:///etc/passwd" })).toThrow(
      /MESH_ENRICHMENT_HTTP_URL must be an http\(s\) URL/,
    );
  });
});

describe("loadConfig mail signing", () => {
  it("takes DKIM as all three settings or none, with a readable private key", async () => {
    const { generateKeyPairSync } = await import("node:crypto");
    const { mkdtempSync, writeFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "dkim-"));
    const keyFile = join(dir, "dkim.pem");
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    writeFileSync(keyFile, privateKey.export({ type: "pkcs8", format: "pem" }));
    const config = loadConfig(
      {},
      { MESH_DKIM_DOMAIN: "example.com", MESH_DKIM_SELECTOR: "mesh", MESH_DKIM_PRIVATE_KEY_FILE: keyFile },
    );
    expect(config.emailDkimDomain).toBe("example.com");
    expect(config.emailDkimPrivateKey).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(() => loadConfig({}, { MESH_DKIM_DOMAIN: "example.com" })).toThrow(/set all three or none/);
    writeFileSync(keyFile, "not a key");
    expect(() =>
      loadConfig(
        {},
        { MESH_DKIM_DOMAIN: "example.com", MESH_DKIM_SELECTOR: "mesh", MESH_DKIM_PRIVATE_KEY_FILE: keyFile },
      ),
    ).toThrow(/MESH_DKIM_PRIVATE_KEY_FILE must name a readable private key PEM/);
    const err = thrownBy(() => loadConfig({}, { MESH_EMAIL_UNSUBSCRIBE_SECRET: "short-secret" }));
    expect(err.message).toBe("MESH_EMAIL_UNSUBSCRIBE_SECRET must be at least 16 characters");
  });
});
