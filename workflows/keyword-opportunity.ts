/**
 * The reference workflow: one keyword opportunity from research to measured content.
 * Built so far: validate volume and competition (Research, content server) → approve the brief (a
 * person) → rank targets against competitors (SEO, technical server). The later steps — brief and
 * article (Writing), target segment (CRM), posts (Social), newsletter (Email), conversion tracking
 * (Data), monitoring (Reporting) — are added here as those skills are built.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ResearchService } from "../gen/mesh/research/v1/research_service_pb.ts";
import { SeoService } from "../gen/mesh/seo/v1/seo_service_pb.ts";
import { KeywordOpportunityInputSchema } from "../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { defineWorkflow } from "../lib/workflow/index.ts";

const day = 24 * 3600 * 1000;

/** keyword_opportunity. */
export const keywordOpportunity = defineWorkflow({
  name: "keyword_opportunity",
  description:
    "Takes one keyword opportunity through research, an approval of the brief and rank targets against competitors.",
  input: KeywordOpportunityInputSchema,
  steps: (s) => {
    const research = s.skill("validate_opportunity", ResearchService.method.keywordResearch, {
      input: (c) => ({
        keywords: [
          {
            keyword: c.input.keyword,
            monthlySearchVolume: c.input.monthlyVolume,
            difficulty: c.input.difficulty,
            currentPosition: c.input.currentPosition,
          },
        ],
      }),
      timeoutMs: 10_000,
    });
    const approve = s.approval("approve_brief", {
      after: [research],
      approvers: (c) => (c.input.approvers.length > 0 ? [...c.input.approvers] : ["marketing-lead"]),
      timeoutMs: 2 * day,
      escalateTo: [["head-of-marketing"]],
    });
    const rank = s.skill("rank_targets", SeoService.method.trackRankings, {
      after: [approve],
      input: (c) => {
        // Only keywords Research scored go on to rank tracking.
        const scored = c.output(research).keywords.find((k) => k.keyword === c.input.keyword);
        // The snapshot day is the run's start day (UTC), the same on every attempt.
        const today = new Date(c.runStartedAt.getTime() - (c.runStartedAt.getTime() % day));
        return {
          ourDomain: c.input.siteDomain,
          keywords: [
            {
              keyword: c.input.keyword,
              monthlySearchVolume: c.input.monthlyVolume,
              difficulty: scored?.difficulty ?? c.input.difficulty,
            },
          ],
          // Position 0 is an observation too: not ranking in the top 100.
          observations: [
            {
              keyword: c.input.keyword,
              domain: c.input.siteDomain,
              position: c.input.currentPosition,
              observedAt: timestampFromDate(today),
            },
          ],
          previousDate: timestampFromDate(new Date(today.getTime() - day)),
          currentDate: timestampFromDate(today),
        };
      },
      timeoutMs: 15_000,
    });
    return [research, approve, rank];
  },
});
