/**
 * Connection hygiene of a real server: slow or silent connections are closed after the configured
 * timeouts while normal clients keep working, and the bearer scheme is matched case-insensitively.
 */
import net from "node:net";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResearchService } from "../gen/mesh/research/v1/research_service_pb.ts";
import { expectCode } from "./support/expect.ts";
import { type Harness, startHarness } from "./support/harness.ts";

let h: Harness;

beforeAll(async () => {
  h = await startHarness({
    servers: ["content"],
    env: { MESH_HTTP_HEADERS_TIMEOUT_MS: "300", MESH_HTTP_REQUEST_TIMEOUT_MS: "600" },
  });
});
afterAll(async () => {
  await h?.close();
});

const req = { keywords: [{ keyword: "memory care austin", monthlySearchVolume: 100n, difficulty: 20 }] };

function connect(): Promise<net.Socket> {
  const { hostname, port } = new URL(h.urls.content);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(port), hostname, () => {
      s.off("error", reject);
      s.on("error", () => {});
      resolve(s);
    });
    s.once("error", reject);
  });
}

/** Resolves when the server closes `s` (or has closed it already); fails after 5 s. */
function closedByServer(s: net.Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    if (s.destroyed) return resolve();
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error("the server kept the connection open"));
    }, 5000);
    s.resume();
    s.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

describe("slow connections", () => {
  it("are closed after the timeouts while a normal client keeps working", async () => {
    const client = h.client("content", ResearchService);
    const silent = await connect();
    const partialLine = await connect();
    partialLine.write("POST /mesh.research.v1.ResearchService/KeywordResearch HT");
    const partialPreface = await connect();
    partialPreface.write("PRI * HTTP/2.0\r\n\r\n");
    const stalledBody = await connect();
    stalledBody.write(
      "POST /mesh.research.v1.ResearchService/KeywordResearch HTTP/1.1\r\nhost: x\r\n" +
        "content-type: application/json\r\ncontent-length: 1000\r\n\r\n{",
    );
    expect((await client.keywordResearch(req)).$typeName).toBeDefined();
    await Promise.all([silent, partialLine, partialPreface, stalledBody].map(closedByServer));
    expect((await client.keywordResearch(req)).$typeName).toBeDefined();
    expect(h.process("content")?.exitCode).toBeNull();
  });
});

describe("authorization header", () => {
  it("accepts the bearer scheme in any case", async () => {
    const anonymous = h.client("content", ResearchService, null);
    for (const scheme of ["bearer", "BEARER", "Bearer"]) {
      const res = await anonymous.keywordResearch(req, {
        headers: { authorization: `${scheme} ${h.tokens.operator}` },
      });
      expect(res.$typeName).toBeDefined();
    }
  });

  it("still refuses malformed headers and wrong tokens with UNAUTHENTICATED", async () => {
    const anonymous = h.client("content", ResearchService, null);
    const token = h.tokens.operator as string;
    for (const authorization of [
      "bearer",
      `bearer${token}`,
      `Basic ${token}`,
      `bearer ${token} extra`,
      `bearer ${token}!`,
      `bearer ${token}x`,
    ]) {
      await expectCode(
        anonymous.keywordResearch(req, { headers: { authorization } }),
        Code.Unauthenticated,
        /invalid bearer token/,
      );
    }
  });
});
