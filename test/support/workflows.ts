/**
 * Workflows the integration tests load into the technical server through MESH_WORKFLOWS. They use
 * skills that are implemented on each of the three servers, so every run crosses all of them:
 * Research (content), CRM (operations) and SEO (technical).
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { CrmService, InteractionType } from "../../gen/mesh/crm/v1/crm_service_pb.ts";
import { ResearchService } from "../../gen/mesh/research/v1/research_service_pb.ts";
import { SeoService } from "../../gen/mesh/seo/v1/seo_service_pb.ts";
import { KeywordOpportunityInputSchema } from "../../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { WritingService } from "../../gen/mesh/writing/v1/writing_service_pb.ts";
import { defineWorkflow, type StepContext } from "../../lib/workflow/define.ts";

type Ctx = StepContext<{ keyword: string; approvers: string[] }>;

/** A TrackInteraction request recording `what` for the run (its event id is `<run>-<what>`). */
const record = (c: Ctx, what: string) => ({
  interaction: {
    eventId: `${c.runId}-${what}`,
    anonymousId: `visitor-${c.runId}`,
    type: InteractionType.PAGE_VIEW,
    url: `https://example.com/${what}`,
    occurredAt: timestampFromDate(c.runStartedAt),
  },
});

const research = (c: Ctx) => ({
  keywords: [{ keyword: c.input.keyword, monthlySearchVolume: 1000n, difficulty: 30, currentPosition: 12 }],
});

const day = 24 * 3600 * 1000;
const rankings = (c: Ctx) => {
  const today = c.runStartedAt.getTime() - (c.runStartedAt.getTime() % day);
  return {
    ourDomain: "example.com",
    keywords: [{ keyword: c.input.keyword, monthlySearchVolume: 1000n, difficulty: 30 }],
    observations: [
      {
        keyword: c.input.keyword,
        domain: "example.com",
        position: 14,
        observedAt: timestampFromDate(new Date(today - day)),
      },
      { keyword: c.input.keyword, domain: "example.com", position: 12, observedAt: timestampFromDate(new Date(today)) },
    ],
    previousDate: timestampFromDate(new Date(today - day)),
    currentDate: timestampFromDate(new Date(today)),
  };
};

/** research (content) → record (operations) ∥ rankings (technical) → approval → final record. */
export const threeServers = defineWorkflow({
  name: "test_three_servers",
  description: "Crosses the three servers, with an approval gate in the middle.",
  input: KeywordOpportunityInputSchema,
  steps: (s) => {
    const a = s.skill("research", ResearchService.method.keywordResearch, { input: research });
    const b = s.skill("record", CrmService.method.trackInteraction, { after: [a], input: (c) => record(c, "record") });
    const r = s.skill("rankings", SeoService.method.trackRankings, { after: [a], input: rankings });
    const gate = s.approval("sign_off", {
      after: [b, r],
      approvers: (c) => [...c.input.approvers],
      timeoutMs: 3_600_000,
    });
    const done = s.skill("record_done", CrmService.method.trackInteraction, {
      after: [gate],
      input: (c) => record(c, "done"),
    });
    return [a, b, r, gate, done];
  },
});

/** Two compensable steps, then a step whose request its agent refuses (INVALID_ARGUMENT: not retried). */
export const doomed = defineWorkflow({
  name: "test_doomed",
  description: "Fails permanently at its third step and rolls back the first two in reverse order.",
  input: KeywordOpportunityInputSchema,
  steps: (s) => {
    const first = s.skill("first", CrmService.method.trackInteraction, {
      input: (c) => record(c, "first"),
      compensate: { method: CrmService.method.trackInteraction, input: (c) => record(c, "undo-first") },
    });
    const second = s.skill("second", SeoService.method.trackRankings, {
      after: [first],
      input: rankings,
      compensate: { method: CrmService.method.trackInteraction, input: (c) => record(c, "undo-second") },
    });
    const third = s.skill("third", WritingService.method.createLongFormContent, {
      after: [second],
      input: () => ({}),
      retry: { maxAttempts: 3, initialBackoffMs: 50 },
    });
    return [first, second, third];
  },
});

/** research → approval (short timeout, one escalation level) → record. */
export const gated = defineWorkflow({
  name: "test_gated",
  description: "An approval gate that escalates to `boss` after 1.5 s and fails after another 1.5 s.",
  input: KeywordOpportunityInputSchema,
  steps: (s) => {
    const a = s.skill("research", ResearchService.method.keywordResearch, { input: research });
    const gate = s.approval("approve", {
      after: [a],
      approvers: (c) => [...c.input.approvers],
      timeoutMs: 1500,
      escalateTo: [["boss"]],
    });
    const done = s.skill("record", CrmService.method.trackInteraction, {
      after: [gate],
      input: (c) => record(c, "gated"),
    });
    return [a, gate, done];
  },
});

/** research (content) → record (operations) ∥ rankings (technical): the benchmark's run. */
export const pipeline = defineWorkflow({
  name: "test_pipeline",
  description: "Three skill steps on three servers, the last two in parallel.",
  input: KeywordOpportunityInputSchema,
  steps: (s) => {
    const a = s.skill("research", ResearchService.method.keywordResearch, { input: research });
    const b = s.skill("record", CrmService.method.trackInteraction, {
      after: [a],
      input: (c) => record(c, "pipeline"),
    });
    const r = s.skill("rankings", SeoService.method.trackRankings, { after: [a], input: rankings });
    return [a, b, r];
  },
});
