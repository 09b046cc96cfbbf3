/**
 * The purchases RFM and RFM clustering features read: the request's inline transactions, or the
 * CRM's won deals (each won deal is one purchase on its close date, its amount in micros; deals in
 * another currency are left out, deals without an amount count as purchases of 0).
 */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { CustomerTransaction } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { EntityManager } from "../../../lib/db/index.ts";
import { measuresOf, type RfmMeasures } from "./rfm.ts";

/** RFM measures per customer from inline transactions or the CRM's won deals. */
export async function loadMeasures(
  em: EntityManager,
  schema: string,
  inline: readonly CustomerTransaction[],
  opts: { asOf: Date; lookbackMs: number; currency: string; contactIds: readonly string[] | undefined },
): Promise<RfmMeasures[]> {
  const asOfMs = opts.asOf.getTime();
  const within = opts.contactIds === undefined ? undefined : new Set(opts.contactIds.map((id) => id.toLowerCase()));
  if (inline.length > 0) {
    const all = measuresOf(
      inline.map((t) => ({
        contactId: t.contactId,
        atMs: t.occurredAt === undefined ? Number.NaN : timestampDate(t.occurredAt).getTime(),
        amountMicros: t.amountMicros,
        transactionId: t.transactionId,
      })),
      asOfMs,
      opts.lookbackMs,
    );
    return within === undefined ? all : all.filter((m) => within.has(m.contactId));
  }
  const where = [
    "d.outcome = 2",
    "d.closed_at <= ?::timestamptz",
    "(d.currency_code is null or d.currency_code = ?)",
    "c.merged_into_id is null",
  ];
  const params: unknown[] = [opts.asOf.toISOString(), opts.currency];
  if (opts.lookbackMs > 0) {
    where.push("d.closed_at > ?::timestamptz");
    params.push(new Date(asOfMs - opts.lookbackMs).toISOString());
  }
  if (within !== undefined) {
    if (within.size === 0) return [];
    where.push("d.contact_id = any(array[?]::uuid[])");
    params.push([...within]);
  }
  const rows = (await em.execute(
    `select d.contact_id as id, count(*)::int as n, ` +
      `extract(epoch from (?::timestamptz - max(d.closed_at)))::float8 / 86400 as days, ` +
      `coalesce(sum(coalesce(d.amount_units, 0)::numeric * 1000000 + coalesce(d.amount_nanos, 0) / 1000), 0)::bigint::text as micros ` +
      `from ${schema}."crm_deal" d join ${schema}."crm_contact" c on c.id = d.contact_id where ${where.join(" and ")} group by d.contact_id`,
    [opts.asOf.toISOString(), ...params],
  )) as { id: string; n: number; days: number; micros: string }[];
  return rows.map((r) => ({
    contactId: r.id,
    recencyDays: Number(r.days),
    frequency: Number(r.n),
    monetaryMicros: BigInt(r.micros),
  }));
}
