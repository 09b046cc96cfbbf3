/**
 * CreateNewsletter (`content.newsletter`): renders the issue and stores it as a campaign draft with
 * its subject-line test plan. Nothing is sent here; SendNewsletter queues recipients and the send
 * worker delivers.
 *
 * The test plan is the contract's: per-variant sample size for a two-sided two-proportion z-test
 * (Fleiss) at the baseline rate and minimum detectable effect, α Bonferroni-adjusted over the k−1
 * comparisons with the control, the rest of the audience receiving the winner. With an audience too
 * small for the test, the variants split it and the plan reports the power achieved.
 */
import { randomUUID } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { LockMode } from "@mikro-orm/postgresql";
import {
  AbTestMetric,
  type AbTestPlan,
  AbTestPlanSchema,
  type CreateNewsletterRequest,
  CreateNewsletterRequestSchema,
  type CreateNewsletterResponse,
  CreateNewsletterResponseSchema,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { type Database, transaction } from "../../../lib/db/index.ts";
import { checkContract, FailedPreconditionError, InvalidInputError } from "../../../lib/errors/index.ts";
import { EmailNewsletter, EmailNewsletterSend } from "../entities.ts";
import { GMAIL_CLIP_BYTES, renderIssue } from "../newsletter/render.ts";
import { achievedPower, sampleSizePerVariant } from "../newsletter/stats.ts";

/** Dependencies of the skill. */
export interface CreateNewsletterDeps {
  readonly db: Database;
  readonly now: () => Date;
  /** True when messages are DKIM-signed (one-click unsubscribe needs it). */
  readonly dkimConfigured: boolean;
}

/** Field each message-level rule of the contract is about. */
const ruleFields: Record<string, string> = {
  "newsletter_article.image_alt": "image_alt",
  "newsletter_section.content": "body",
  "ab_test_config.effect": "minimum_detectable_effect",
  "create_newsletter.ab_test": "ab_test",
  "create_newsletter.unique_variants": "subject_variants",
};

/** Default test window: 4 hours. */
const DEFAULT_TEST_MS = 4 * 3_600_000;

/** The subject-line test plan of a request with two or more variants. */
export function planAbTest(req: CreateNewsletterRequest): AbTestPlan | undefined {
  const ab = req.abTest;
  const k = req.subjectVariants.length;
  if (ab === undefined || k < 2) return undefined;
  const alpha = ab.alpha || 0.05;
  const power = ab.power || 0.8;
  const p1 = ab.baselineRate;
  const p2 = p1 + ab.minimumDetectableEffect;
  const alphaPer = alpha / (k - 1);
  const n = sampleSizePerVariant(p1, p2, alphaPer, power);
  const audience = Number(req.audienceSize);
  const known = audience > 0;
  const feasible = !known || audience >= n * k;
  const perVariant = feasible ? n : Math.floor(audience / k);
  const testSize = perVariant * k;
  const durationMs = ab.testDuration
    ? Number(ab.testDuration.seconds) * 1000 + Math.round(ab.testDuration.nanos / 1e6)
    : 0;
  const metric = ab.metric === AbTestMetric.OPEN_RATE ? AbTestMetric.OPEN_RATE : AbTestMetric.CLICK_RATE;
  const what = metric === AbTestMetric.OPEN_RATE ? "open rate" : "click rate";
  return create(AbTestPlanSchema, {
    metric,
    baselineRate: p1,
    targetRate: p2,
    alphaPerComparison: alphaPer,
    power,
    sampleSizePerVariant: BigInt(n),
    testSize: BigInt(testSize),
    winnerSize: BigInt(known ? Math.max(0, audience - testSize) : 0),
    audienceSize: BigInt(audience),
    feasible,
    achievedPower: feasible ? power : achievedPower(p1, p2, alphaPer, perVariant),
    testDuration: durationFromMs(durationMs || DEFAULT_TEST_MS),
    variants: req.subjectVariants.map((v) => ({
      variantId: v.variantId,
      subject: v.subject,
      recipients: BigInt(perVariant),
    })),
    decisionRule: `Each variant goes to ${perVariant} recipients; the variant with the highest ${what} wins once a pooled two-proportion z-test against every other variant is significant at α = ${+alphaPer.toPrecision(4)} (two-sided, Bonferroni over ${k - 1} comparisons) after the test sends are delivered, or has the highest ${what} when the ${(durationMs || DEFAULT_TEST_MS) / 3_600_000} h window closes; the winner then goes to the rest of the segment.`,
  });
}

/** Renders and stores the draft; replays of a request id return the stored draft. */
export async function createNewsletter(
  deps: CreateNewsletterDeps,
  req: CreateNewsletterRequest,
): Promise<CreateNewsletterResponse> {
  checkContract(CreateNewsletterRequestSchema, req, ruleFields);
  const earlier = await deps.db.fork().findOne(EmailNewsletter, { requestId: req.requestId });
  if (earlier !== null) return fromBinary(CreateNewsletterResponseSchema, new Uint8Array(earlier.response));

  // Rendering is CPU work: done before the transaction, which stays short.
  const issue = await renderIssue(req);
  const unsubscribe = req.unsubscribe as NonNullable<CreateNewsletterRequest["unsubscribe"]>;
  const sender = req.sender as NonNullable<CreateNewsletterRequest["sender"]>;
  const plan = planAbTest(req);
  const htmlBytes = Buffer.byteLength(issue.html, "utf8");
  const warnings = [...issue.warnings];
  if (htmlBytes > GMAIL_CLIP_BYTES) {
    warnings.push(`The HTML is ${htmlBytes} bytes, over the 102 KB at which Gmail clips messages.`);
  }
  if (!deps.dkimConfigured) {
    warnings.push("No DKIM key is configured: Gmail and Yahoo honour one-click unsubscribe only on DKIM-signed mail.");
  }
  if (plan && !plan.feasible) {
    warnings.push(
      `The audience of ${req.audienceSize} is smaller than the ${Number(plan.sampleSizePerVariant) * req.subjectVariants.length} recipients the test needs; the variants split it, with power ${plan.achievedPower.toFixed(2)}.`,
    );
  }
  if (plan && req.audienceSize === 0n) {
    warnings.push(
      "No audience size given: the test share is fixed from the recipients of the first SendNewsletter call.",
    );
  }
  const listUnsubscribe = [`<${unsubscribe.url}${unsubscribe.url.includes("?") ? "&" : "?"}token={{token}}>`];
  if (unsubscribe.mailto) listUnsubscribe.push(`<mailto:${unsubscribe.mailto}>`);

  return transaction(deps.db, async (em) => {
    const now = deps.now();
    const campaignId = req.campaignId || `nl_${randomUUID().replaceAll("-", "")}`;
    const existing = await em.findOne(EmailNewsletter, { campaignId }, { lockMode: LockMode.PESSIMISTIC_WRITE });
    if (existing !== null) {
      const queued = await em.count(EmailNewsletterSend, { campaignId });
      if (queued > 0) {
        throw new FailedPreconditionError(
          `campaign ${campaignId} is already being sent; create a new campaign instead`,
        );
      }
    } else if (req.campaignId !== "" && !/^[A-Za-z0-9_-]+$/.test(req.campaignId)) {
      throw new InvalidInputError("campaign_id", "campaign_id may contain only letters, digits, '_' and '-'");
    }
    const revision = (existing?.revision ?? 0) + 1;
    const response = create(CreateNewsletterResponseSchema, {
      campaignId,
      revision,
      mjml: issue.mjml,
      html: issue.html,
      plainText: issue.text,
      headers: [
        { name: "List-Unsubscribe", value: listUnsubscribe.join(", ") },
        { name: "List-Unsubscribe-Post", value: "List-Unsubscribe=One-Click" },
      ],
      ...(plan ? { abTestPlan: plan } : {}),
      htmlByteSize: BigInt(htmlBytes),
      clippingRisk: htmlBytes > GMAIL_CLIP_BYTES,
      warnings,
      createdAt: timestampFromDate(now),
    });
    const values = {
      requestId: req.requestId,
      revision,
      title: req.title,
      segmentId: req.segmentId,
      senderName: sender.name,
      senderAddress: sender.address,
      replyTo: sender.replyTo,
      variants: req.subjectVariants.map((v) => ({
        variantId: v.variantId,
        subject: v.subject,
        preheader: v.preheader,
      })),
      preheader: req.preheader,
      mjml: issue.mjml,
      html: issue.html,
      plainText: issue.text,
      unsubscribeUrl: unsubscribe.url,
      unsubscribeMailto: unsubscribe.mailto,
      response: Buffer.from(toBinary(CreateNewsletterResponseSchema, response)),
      abMetric: plan?.metric === AbTestMetric.OPEN_RATE ? "open" : "click",
      abState: plan ? ("draft" as const) : ("none" as const),
      abAlpha: plan?.alphaPerComparison ?? 0.05,
      abTestSize: Number(plan?.testSize ?? 0n),
      abAudienceSize: Number(req.audienceSize),
      abTestDurationMs: plan?.testDuration
        ? Number(plan.testDuration.seconds) * 1000 + Math.round(plan.testDuration.nanos / 1e6)
        : 0,
      abTestFraction: null,
      testStartedAt: null,
      testEndsAt: null,
      winnerVariantId: "",
      decision: null,
      decidedAt: null,
      updatedAt: now,
    };
    if (existing) em.assign(existing, values);
    else em.create(EmailNewsletter, { campaignId, ...values, createdAt: now });
    return response;
  });
}
