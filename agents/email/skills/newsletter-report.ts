/**
 * GetNewsletterReport and RecordNewsletterEngagement: a campaign's deliverability (sent, failed,
 * bounced, complained, unsubscribed, unknown) and engagement per subject variant, counted in SQL
 * from the send rows (one aggregate query, whatever the audience), and the recording of unique opens
 * and clicks that the report and the subject test read.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  AbTestMetric,
  AbTestState,
  EngagementKind,
  type GetNewsletterReportRequest,
  GetNewsletterReportRequestSchema,
  type GetNewsletterReportResponse,
  GetNewsletterReportResponseSchema,
  type RecordNewsletterEngagementRequest,
  RecordNewsletterEngagementRequestSchema,
  type RecordNewsletterEngagementResponse,
  RecordNewsletterEngagementResponseSchema,
  VariantReportSchema,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { type Database, transaction } from "../../../lib/db/index.ts";
import { checkContract, NotFoundError } from "../../../lib/errors/index.ts";
import { normalizeAddress } from "../delivery.ts";
import { EmailNewsletter } from "../entities.ts";

interface CountRow {
  variant_id: string;
  recipients: string;
  pending: string;
  sent: string;
  test_sent: string;
  failed: string;
  suppressed: string;
  unknown: string;
  bounced: string;
  complained: string;
  unsubscribed: string;
  opens: string;
  clicks: string;
}

const states = {
  none: AbTestState.UNSPECIFIED,
  draft: AbTestState.NOT_STARTED,
  testing: AbTestState.TESTING,
  decided: AbTestState.DECIDED,
};

/** The report of one campaign. */
export async function getNewsletterReport(
  deps: { db: Database },
  req: GetNewsletterReportRequest,
): Promise<GetNewsletterReportResponse> {
  checkContract(GetNewsletterReportRequestSchema, req);
  const em = deps.db.fork();
  const c = await em.findOne(EmailNewsletter, { campaignId: req.campaignId });
  if (c === null) throw new NotFoundError(`campaign ${req.campaignId} does not exist`);
  const rows = await em.getConnection().execute<CountRow[]>(
    `select variant_id, count(*) as recipients,
       count(*) filter (where status in ('pending', 'held', 'sending')) as pending,
       count(*) filter (where status = 'sent') as sent,
       count(*) filter (where status = 'sent' and in_test) as test_sent,
       count(*) filter (where status = 'failed') as failed,
       count(*) filter (where status = 'suppressed') as suppressed,
       count(*) filter (where status = 'unknown') as unknown,
       count(bounced_at) as bounced, count(complained_at) as complained, count(unsubscribed_at) as unsubscribed,
       count(opened_at) as opens, count(clicked_at) as clicks
     from "${deps.db.schema}"."email_newsletter_send" where campaign_id = ? group by variant_id`,
    [c.campaignId],
    "all",
  );
  const total = (k: keyof CountRow) => BigInt(rows.reduce((a, r) => a + Number(r[k]), 0));
  const by = new Map(rows.map((r) => [r.variant_id, r]));
  const rate = (x: number, n: number) => (n > 0 ? x / n : 0);
  return create(GetNewsletterReportResponseSchema, {
    campaignId: c.campaignId,
    recipients: total("recipients"),
    pending: total("pending"),
    sent: total("sent"),
    failed: total("failed"),
    suppressed: total("suppressed"),
    unknown: total("unknown"),
    bounced: total("bounced"),
    complained: total("complained"),
    unsubscribed: total("unsubscribed"),
    opens: total("opens"),
    clicks: total("clicks"),
    variants: c.variants.map((v) => {
      const r = by.get(v.variantId);
      const delivered = Number(r?.sent ?? 0);
      return create(VariantReportSchema, {
        variantId: v.variantId,
        subject: v.subject,
        delivered: BigInt(delivered),
        testDelivered: BigInt(Number(r?.test_sent ?? 0)),
        opens: BigInt(Number(r?.opens ?? 0)),
        clicks: BigInt(Number(r?.clicks ?? 0)),
        openRate: rate(Number(r?.opens ?? 0), delivered),
        clickRate: rate(Number(r?.clicks ?? 0), delivered),
      });
    }),
    ...(c.abState === "none"
      ? {}
      : {
          abTest: {
            state: states[c.abState],
            metric: c.abMetric === "open" ? AbTestMetric.OPEN_RATE : AbTestMetric.CLICK_RATE,
            winnerVariantId: c.winnerVariantId,
            significant: c.decision?.significant ?? false,
            z: c.decision?.z ?? 0,
            pValue: c.decision?.pValue ?? 1,
            alphaPerComparison: Number(c.abAlpha),
            reason: c.decision?.reason ?? "",
            ...(c.decidedAt ? { decidedAt: timestampFromDate(c.decidedAt) } : {}),
            ...(c.testEndsAt ? { testEndsAt: timestampFromDate(c.testEndsAt) } : {}),
          },
        }),
  });
}

/** Records first opens and clicks (a click counts as an open too). */
export async function recordNewsletterEngagement(
  deps: { db: Database; now: () => Date },
  req: RecordNewsletterEngagementRequest,
): Promise<RecordNewsletterEngagementResponse> {
  checkContract(RecordNewsletterEngagementRequestSchema, req);
  const now = deps.now();
  const events = req.events.map((e) => ({
    campaign_id: e.campaignId,
    recipient: normalizeAddress(e.address),
    click: e.kind === EngagementKind.CLICK,
    at: (e.occurredAt ? new Date(Number(e.occurredAt.seconds) * 1000 + e.occurredAt.nanos / 1e6) : now).toISOString(),
  }));
  const t = `"${deps.db.schema}"."email_newsletter_send"`;
  return transaction(deps.db, async (em) => {
    // All CTEs read the rows as they were before the update: `cur` holds the earlier first open and
    // click, so an event counts as recorded only when it set one of them.
    const [r] = await em.getConnection().execute<{ matched: string; recorded: string }[]>(
      `with ev as (select * from jsonb_to_recordset(?::jsonb) as e(campaign_id text, recipient text, click boolean, at timestamptz)),
       agg as (select campaign_id, recipient, min(at) as opened, min(at) filter (where click) as clicked, count(*) as n from ev group by campaign_id, recipient),
       cur as (select s.id, s.opened_at, s.clicked_at, a.opened, a.clicked, a.n from ${t} s join agg a on s.campaign_id = a.campaign_id and s.recipient = a.recipient
               where s.status in ('sent', 'unknown') for update of s),
       upd as (update ${t} s set opened_at = coalesce(cur.opened_at, cur.opened), clicked_at = coalesce(cur.clicked_at, cur.clicked), updated_at = ?
               from cur where s.id = cur.id
               returning cur.n as n, least(cur.n, (case when cur.opened_at is null then 1 else 0 end) + (case when cur.clicked_at is null and cur.clicked is not null then 1 else 0 end)) as firsts)
       select coalesce(sum(n), 0) as matched, coalesce(sum(firsts), 0) as recorded from upd`,
      [JSON.stringify(events), now],
      "all",
      em.getTransactionContext(),
    );
    const matched = Number(r?.matched ?? 0);
    const recorded = Number(r?.recorded ?? 0);
    return create(RecordNewsletterEngagementResponseSchema, {
      recorded,
      repeatedEvents: matched - recorded,
      unmatched: events.length - matched,
    });
  });
}
