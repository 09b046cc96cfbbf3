import { create, type DescMessage } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { KeywordResearchResponseSchema } from "../gen/mesh/research/v1/research_service_pb.ts";
import { KeywordOpportunityInputSchema } from "../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { findViolations } from "../lib/errors/index.ts";
import { shortestRetryWindowMs } from "../lib/workflow/index.ts";
import { builtinWorkflows } from "./index.ts";
import { keywordOpportunity } from "./keyword-opportunity.ts";

/** About 12 s for a restarted server to report SERVING, plus a caller's breaker half-open delay (5 s). */
const serverRestartMs = 17_000;

describe("built-in workflows", () => {
  it.each(builtinWorkflows.map((w) => [w.name, w] as const))(
    "%s: every skill step keeps retrying through a restart of its agent's server, with margin",
    (_name, workflow) => {
      const skills = workflow.steps.filter((s) => s.kind === "skill");
      expect(skills.length).toBeGreaterThan(0);
      for (const s of skills) {
        expect(shortestRetryWindowMs(s.retry), s.name).toBeGreaterThanOrEqual(2 * serverRestartMs);
      }
    },
  );
});

describe("keyword_opportunity", () => {
  it.each([0, 14])("sends every skill step a request its contract accepts (current position %i)", (position) => {
    const input = create(KeywordOpportunityInputSchema, {
      keyword: "memory care austin",
      siteDomain: "example.com",
      monthlyVolume: 880n,
      difficulty: 31,
      currentPosition: position,
    });
    const ctx = {
      input,
      runId: "3f1c2a9e-8b7d-4c6e-9a1f-2b3c4d5e6f70",
      runStartedAt: new Date("2026-12-03T10:00:00Z"),
      output: () => create(KeywordResearchResponseSchema, {}),
    };
    for (const step of keywordOpportunity.steps) {
      if (step.kind !== "skill") continue;
      const request = create(step.method.input as DescMessage, step.input(ctx as never) as never);
      expect(findViolations(step.method.input, request), step.name).toBeUndefined();
    }
  });
});
