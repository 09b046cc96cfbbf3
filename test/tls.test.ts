/** TLS between servers with certificates from `mesh certs`. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health } from "../gen/grpc/health/v1/health_pb.ts";
import { SeoService } from "../gen/mesh/seo/v1/seo_service_pb.ts";
import { createDevCertificates } from "../lib/tls/index.ts";
import { type Harness, startHarness } from "./support/harness.ts";
import { rankTrackingRequest } from "./support/requests.ts";

let h: Harness;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mesh-tls-"));
  createDevCertificates({ dir, identities: ["content", "operations", "technical"] });
  h = await startHarness({ servers: ["content", "technical"], tlsDir: dir });
});
afterAll(async () => {
  await h?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("TLS", () => {
  it("serves https and the servers call each other over TLS", async () => {
    expect(h.urls.technical.startsWith("https://")).toBe(true);
    const res = await h.client("technical", SeoService).trackRankings(rankTrackingRequest());
    expect(res.opportunities).toHaveLength(1);
  });

  it("a client that does not trust the mesh CA cannot connect", async () => {
    const untrusted = createClient(Health, createConnectTransport({ baseUrl: h.urls.content, httpVersion: "2" }));
    await expect(untrusted.check({ service: "" }, { timeoutMs: 5000 })).rejects.toThrow(/certificate/i);
    // Plain HTTP/2 to the TLS port is refused too.
    const plain = createClient(
      Health,
      createConnectTransport({ baseUrl: h.urls.content.replace("https:", "http:"), httpVersion: "2" }),
    );
    await expect(plain.check({ service: "" }, { timeoutMs: 5000 })).rejects.toBeInstanceOf(ConnectError);
  });
});
