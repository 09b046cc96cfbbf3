/** Per-caller rate limits (RESOURCE_EXHAUSTED with retry info) and message size limits. */
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RetryInfoSchema } from "../gen/google/rpc/error_details_pb.ts";
import { ResearchService } from "../gen/mesh/research/v1/research_service_pb.ts";
import { expectCode } from "./support/expect.ts";
import { type Harness, startHarness } from "./support/harness.ts";

let h: Harness;

beforeAll(async () => {
  h = await startHarness({
    servers: ["content"],
    principals: { batch: ["content.*"] },
    env: { MESH_RATE_LIMIT_RPS: "0.5", MESH_RATE_LIMIT_BURST: "3", MESH_MAX_MESSAGE_BYTES: "65536" },
  });
});
afterAll(async () => {
  await h?.close();
});

const req = { keywords: [{ keyword: "memory care austin", monthlySearchVolume: 100n, difficulty: 20 }] };

describe("limits", () => {
  it("limits each caller separately and tells it when to retry", async () => {
    const batch = h.client("content", ResearchService, "batch");
    for (let i = 0; i < 3; i++) await batch.keywordResearch(req);
    const err = await expectCode(batch.keywordResearch(req), Code.ResourceExhausted);
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
});
