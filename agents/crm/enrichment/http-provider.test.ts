import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { EnrichableField } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { httpProvider, ProviderError, retryAfterMs } from "./http-provider.ts";

/** What the local provider received. */
interface Received {
  method: string;
  url: string;
  apiKey: string | undefined;
  body: unknown;
}

/** A local server speaking the documented API; each test queues the answers it gives, in order. */
let server: Server;
let baseUrl: string;
let received: Received[] = [];
let answers: Array<(res: ServerResponse) => void> = [];

const json =
  (status: number, body: unknown, headers: Record<string, string> = {}) =>
  (res: ServerResponse) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify(body));
  };

beforeAll(async () => {
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push({
        method: req.method ?? "",
        url: req.url ?? "",
        apiKey: req.headers["x-api-key"] as string | undefined,
        body: JSON.parse(Buffer.concat(chunks).toString("utf8") || "null"),
      });
      const answer = answers.shift() ?? json(500, { error: "no answer queued" });
      answer(res);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api`;
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
});
beforeEach(() => {
  received = [];
  answers = [];
});

const signal = new AbortController().signal;

function provider(waits: number[], more: Partial<Parameters<typeof httpProvider>[0]> = {}) {
  return httpProvider({
    name: "vendor",
    baseUrl,
    apiKey: "k-123",
    maxAttempts: 3,
    sleep: async (ms) => {
      waits.push(ms);
    },
    random: () => 0.5,
    ...more,
  });
}

describe("HTTP enrichment provider against a local server", () => {
  it("posts the query with the API key and reads the documented answer", async () => {
    answers.push(
      json(200, {
        fields: [
          { field: "company_name", value: "Acme Ltd", confidence: 0.92 },
          { field: "employee_count", value: 250, confidence: 0.7 },
          { field: "annual_revenue", value: 12500000.5, confidence: 0.6 },
          { field: "city", value: { city: "London", region: "ENG" }, confidence: 0.8 },
          { field: "phone", value: "020 7946 0000", confidence: 0.5 },
          { field: "favourite_colour", value: "blue", confidence: 1 },
        ],
      }),
    );
    const found = await provider([]).lookup({ email: "ada@acme.co.uk", domain: "acme.co.uk", country: "GB" }, signal);
    expect(received).toEqual([
      {
        method: "POST",
        url: "/api/enrich",
        apiKey: "k-123",
        body: { email: "ada@acme.co.uk", domain: "acme.co.uk", country: "GB" },
      },
    ]);
    expect(found.map((f) => [f.field, f.found.value.kind.value, f.confidence])).toEqual([
      [EnrichableField.COMPANY_NAME, "Acme Ltd", 0.92],
      [EnrichableField.EMPLOYEE_COUNT, 250n, 0.7],
      [EnrichableField.ANNUAL_REVENUE, 12500000.5, 0.6],
      [EnrichableField.CITY, "London, ENG", 0.8],
      [EnrichableField.PHONE, "+442079460000", 0.5],
    ]);
    expect(found[3]?.found.place).toEqual({ city: "London", region: "ENG" });
  });

  it("waits what Retry-After asks on 429, then succeeds", async () => {
    answers.push(json(429, { error: "slow down" }, { "retry-after": "2" }));
    answers.push(json(200, { fields: [{ field: "job_title", value: "CTO", confidence: 0.8 }] }));
    const waits: number[] = [];
    const found = await provider(waits).lookup({ email: "ada@acme.co.uk" }, signal);
    expect(received).toHaveLength(2);
    expect(waits).toEqual([2000]);
    expect(found.map((f) => f.found.value.kind.value)).toEqual(["CTO"]);
  });

  it("backs off exponentially on 5xx and fails once the attempts are used up", async () => {
    answers.push(json(500, {}), json(503, {}), json(502, {}));
    const waits: number[] = [];
    await expect(provider(waits).lookup({ email: "ada@acme.co.uk" }, signal)).rejects.toThrow(
      new ProviderError("HTTP 502 after 3 attempts"),
    );
    expect(received).toHaveLength(3);
    // Full jitter with random() = 0.5: half of 250 ms, then half of 500 ms.
    expect(waits).toEqual([125, 250]);
  });

  it("does not wait for a Retry-After longer than allowed", async () => {
    answers.push(json(429, {}, { "retry-after": "3600" }));
    const waits: number[] = [];
    await expect(provider(waits).lookup({ email: "a@b.example" }, signal)).rejects.toThrow(/retry after 3600 s/);
    expect(received).toHaveLength(1);
    expect(waits).toEqual([]);
  });

  it("treats 404 and an empty list as a miss, other 4xx and bad bodies as failures without retry", async () => {
    answers.push(
      json(404, {}),
      json(200, { fields: [] }),
      json(401, {}),
      json(200, { fields: [{ field: "company_name", value: "X", confidence: 7 }] }),
    );
    const p = provider([]);
    expect(await p.lookup({ email: "a@b.example" }, signal)).toEqual([]);
    expect(await p.lookup({ email: "a@b.example" }, signal)).toEqual([]);
    await expect(p.lookup({ email: "a@b.example" }, signal)).rejects.toThrow("HTTP 401");
    await expect(p.lookup({ email: "a@b.example" }, signal)).rejects.toThrow(/confidence must be a number from 0 to 1/);
    expect(received).toHaveLength(4);
  });

  it("retries a connection that is refused, and reports it", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const waits: number[] = [];
    await expect(
      provider(waits, { baseUrl: `http://127.0.0.1:${port}` }).lookup({ email: "a@b.example" }, signal),
    ).rejects.toThrow(/unreachable: .* after 3 attempts/);
    expect(waits).toHaveLength(2);
  });

  it("reads Retry-After as seconds or an HTTP date", () => {
    const now = new Date("2026-01-01T00:00:00Z");
    expect(retryAfterMs("5", now)).toBe(5000);
    expect(retryAfterMs("Thu, 01 Jan 2026 00:00:30 GMT", now)).toBe(30_000);
    expect(retryAfterMs("Wed, 31 Dec 2025 00:00:00 GMT", now)).toBe(0);
    expect(retryAfterMs("soon", now)).toBeUndefined();
    expect(retryAfterMs(null, now)).toBeUndefined();
  });

  it("refuses a bad configuration", () => {
    expect(() => httpProvider({ name: "Vendor", baseUrl })).toThrow(/must match/);
    expect(() => httpProvider({ name: "vendor", baseUrl: "ftp://x" })).toThrow(/http or https/);
  });
});
