/** Per-caller rate limits (RESOURCE_EXHAUSTED with retry info) and message size limits. */
import http from "node:http";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RetryInfoSchema } from "../gen/google/rpc/error_details_pb.ts";
import { ResearchService } from "../gen/mesh/research/v1/research_service_pb.ts";
import { expectCode } from "./support/expect.ts";
import { type Harness, startHarness } from "./support/harness.ts";

let h: Harness;

beforeAll(async () => {
  h = await startHarness({
    servers: ["content"],
    principals: { batch: ["content.*"], bulk: ["content.*"] },
    env: {
      MESH_RATE_LIMIT_RPS: "0.5",
      MESH_RATE_LIMIT_BURST: "3",
      MESH_MAX_MESSAGE_BYTES: "65536",
      // Room for the largest message decoded (64 KiB × 64) and a little more.
      MESH_REQUEST_MEMORY_BYTES: String(5 * 1024 * 1024),
    },
  });
});
afterAll(async () => {
  await h?.close();
});

const req = { keywords: [{ keyword: "memory care austin", monthlySearchVolume: 100n, difficulty: 20 }] };

describe("limits", () => {
  it("limits each caller separately and tells it when to retry", async () => {
    const batch = h.client("content", ResearchService, "batch");
    // Six calls at once against a burst of 3: however slow the machine (a token comes back every
    // 2 s), some are refused, and every refusal is the limiter's.
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => batch.keywordResearch(req)));
    const refused = results.flatMap((r) => (r.status === "rejected" ? [ConnectError.from(r.reason)] : []));
    expect(refused.length).toBeGreaterThan(0);
    expect(results.length - refused.length).toBeGreaterThanOrEqual(3);
    expect(refused.map((e) => Code[e.code])).toEqual(refused.map(() => Code[Code.ResourceExhausted]));
    const err = refused[0] as ConnectError;
    expect(err.rawMessage).toMatch(/rate limit of 0.5\/s \(burst 3\) exceeded for batch/);
    const [info] = err.findDetails(RetryInfoSchema);
    const delayMs = Number(info?.retryDelay?.seconds ?? 0n) * 1000 + (info?.retryDelay?.nanos ?? 0) / 1e6;
    expect(delayMs).toBeGreaterThan(0);
    expect(delayMs).toBeLessThanOrEqual(2000); // one token at 0.5/s
    expect(err.metadata.get("retry-after")).toBe("2");
    // Another caller still has its own budget.
    await h.client("content", ResearchService, "operator").keywordResearch(req);
  });

  it("refuses a message over the size limit with RESOURCE_EXHAUSTED", async () => {
    const rows = Array.from({ length: 4000 }, (_, i) => `keyword number ${i},${i},${i % 100}`).join("\n");
    const err = await expectCode(
      h.client("content", ResearchService, "operator").keywordResearch({ csv: `keyword,volume,difficulty\n${rows}` }),
      Code.ResourceExhausted,
    );
    expect(err.rawMessage).toMatch(/message size is larger than configured readMaxBytes 65536/);
  });

  it("refuses a request while large ones in flight hold the request memory, then serves it", async () => {
    const url = new URL(h.urls.content);
    const path = "/mesh.research.v1.ResearchService/KeywordResearch";
    // A 60 KB JSON request whose body arrives slowly holds 60 KB × 64 ≈ 3.7 MiB of the 5 MiB.
    const slow = http.request({
      host: url.hostname,
      port: url.port,
      method: "POST",
      path,
      headers: {
        "content-type": "application/json",
        "content-length": String(60_000),
        authorization: `Bearer ${h.tokens.batch}`,
      },
    });
    const slowAnswered = new Promise<number>((resolve) => {
      slow.on("response", (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      slow.on("error", () => resolve(0));
    });
    slow.write("{");
    await new Promise((r) => setTimeout(r, 300));
    // 45 KB more (binary, ≈ 2 MiB decoded) does not fit beside it: refused at once, told when to retry.
    const keywords = Array.from({ length: 1500 }, (_, i) => ({ keyword: `memory care keyword ${i}`, difficulty: 10 }));
    const bulk = h.client("content", ResearchService, "bulk");
    const err = await expectCode(bulk.keywordResearch({ keywords }), Code.ResourceExhausted);
    expect(err.rawMessage).toMatch(
      /^server busy: requests in flight hold \d+ MB of its 5 MB request memory; retry later$/,
    );
    expect(err.findDetails(RetryInfoSchema)).toHaveLength(1);
    // Once the slow request is over, the same request is served.
    slow.destroy();
    await slowAnswered;
    let answer: Awaited<ReturnType<typeof bulk.keywordResearch>> | undefined;
    await expect
      .poll(
        async () => {
          answer = await bulk.keywordResearch({ keywords }).catch((e: unknown) => {
            if (!(e instanceof ConnectError) || e.code !== Code.ResourceExhausted) throw e;
            return undefined;
          });
          return answer !== undefined;
        },
        { timeout: 10_000 },
      )
      .toBe(true);
    expect(answer?.keywords.length).toBeGreaterThan(0);
  });
});
