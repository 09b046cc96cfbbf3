/**
 * Refusals leave a trace: a call refused at authentication, authorisation or rate limiting is
 * logged and published as a CallRefused security event naming the reason, the procedure, the
 * caller (or the peer address) — and a flood is recorded as counted records, not one per call.
 */

import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CallRefused, RefusalReason } from "../gen/mesh/common/v1/security_pb.ts";
import { KeywordResearchRequestSchema, ResearchService } from "../gen/mesh/research/v1/research_service_pb.ts";
import { type Bus, connectBus, decodeEvent } from "../lib/bus/index.ts";
import { createLogger } from "../lib/log/index.ts";
import { CallRefusedEvent } from "../lib/server/index.ts";
import { eventually, natsUrl } from "./support/backbone.ts";
import { expectCode } from "./support/expect.ts";
import { type Harness, startHarness } from "./support/harness.ts";

describe("refused calls", () => {
  let h: Harness;
  let bus: Bus;
  const events: CallRefused[] = [];
  const request = create(KeywordResearchRequestSchema, {
    keywords: [{ keyword: "assisted living", monthlySearchVolume: 10n }],
  });

  beforeAll(async () => {
    h = await startHarness({
      servers: ["content"],
      principals: { reporter: ["analytics.*"] },
      env: { MESH_RATE_LIMIT_RPS: "1", MESH_RATE_LIMIT_BURST: "3" },
    });
    bus = await connectBus({ url: natsUrl, prefix: h.natsPrefix, name: "refusals-test", log: createLogger("error") });
    bus.fanout(bus.eventSubject(CallRefusedEvent), (d) => {
      events.push(decodeEvent(CallRefusedEvent, d));
    });
  }, 90_000);
  afterAll(async () => {
    await bus?.close();
    await h?.close();
  });

  it("records a missing token, an invalid token and a caller without a grant", async () => {
    const research = (principal: string | null) => h.client("content", ResearchService, principal);
    await expectCode(research(null).keywordResearch(request), Code.Unauthenticated);
    await expectCode(
      research(null).keywordResearch(request, { headers: { authorization: "Bearer not-a-token" } }),
      Code.Unauthenticated,
    );
    await expectCode(research("reporter").keywordResearch(request), Code.PermissionDenied);
    const seen = await eventually(() => (events.length >= 3 ? events.slice(0, 3) : undefined));
    expect(seen.map((e) => e.reason).sort()).toEqual([
      RefusalReason.UNAUTHENTICATED,
      RefusalReason.UNAUTHENTICATED,
      RefusalReason.PERMISSION_DENIED,
    ]);
    for (const e of seen) {
      expect(e).toMatchObject({
        server: "content",
        procedure: "mesh.research.v1.ResearchService/KeywordResearch",
        skillId: "content.keyword_research",
        count: 1,
      });
      expect(e.peerAddress).toMatch(/127\.0\.0\.1/);
    }
    expect(seen.find((e) => e.reason === RefusalReason.PERMISSION_DENIED)?.caller).toBe("reporter");
    expect(h.logs.content).toMatch(/call refused reason=permission_denied .*caller=reporter/);
    expect(h.logs.content).toMatch(/call refused reason=unauthenticated /);
  });

  it("records a flood past the rate limit as counted records", async () => {
    events.length = 0;
    const research = h.client("content", ResearchService, "operator");
    const outcomes = await Promise.all(
      Array.from({ length: 40 }, () =>
        research.keywordResearch(request).then(
          () => "ok",
          (e: { code?: Code }) => e.code,
        ),
      ),
    );
    const limited = outcomes.filter((o) => o === Code.ResourceExhausted).length;
    expect(limited).toBeGreaterThan(20);
    // Every refusal is counted, in far fewer records than refusals.
    const records = await eventually(() => {
      const rate = events.filter((e) => e.reason === RefusalReason.RATE_LIMITED);
      return rate.reduce((n, e) => n + e.count, 0) === limited ? rate : undefined;
    }, 10_000);
    expect(records.length).toBeLessThan(limited);
    expect(records.every((e) => e.caller === "operator")).toBe(true);
  });
});
