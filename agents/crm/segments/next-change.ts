/**
 * When can a stored segment's membership change with no event at all, only because time passes?
 *
 * A rule tree's truth for a contact depends on the clock through its time-relative leaves only:
 * - a count over a window (behaviour or conversion with `within`): true while ≥ `min_count` rows
 *   lie in (now − within, now]; a row leaves the window at `occurred_at + within` and enters it at
 *   `occurred_at` when it is dated ahead of now (TrackInteraction accepts a day of clock skew);
 * - a count over all history (no `within`): rows dated ahead of now enter it, none leave;
 * - WITHIN_LAST of a contact time field or a timestamp attribute `x`: true while
 *   now − d < x ≤ now, so it turns true at `x` (when x is ahead) and false at `x + d`.
 * Every other leaf (fields, absolute dates, stored scores) keeps its truth until an event about the
 * contact, which the incremental path evaluates.
 *
 * So the earliest of those instants after now is the first moment a membership can change. For a
 * whole segment the instants are gated by membership (exactly, not approximately): AND and OR are
 * monotone and NOT flips polarity, so a member can only leave when a leaf of positive polarity turns
 * false or one of negative polarity turns true, and a non-member can only join the other way round.
 * The common case, "≥ 2 page views in the last 30 days", therefore waits for the oldest in-window
 * view of a current member to leave the window. The earliest exit of a leaf is a lower bound (a
 * contact with more than `min_count` rows in the window keeps the leaf true a little longer), so
 * the time found is never later than the real change: at worst a re-evaluation finds nothing to do.
 */
import { BooleanOperator, ComparisonOperator, type Condition } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { behaviourFilter, timeColumns } from "./compile.ts";
import { conversionFilter } from "./score-sql.ts";
import { durationMs, type SqlFragment } from "./sql.ts";

/** One time-relative leaf: per-contact SQL (over `c`) of the next instant it may turn false or true. */
interface Leaf {
  /** Polarity in the tree: false under an odd number of NOT groups. */
  readonly positive: boolean;
  /** When it may turn false (a row leaves its window), or undefined when it never does by time alone. */
  readonly exit: SqlFragment | undefined;
  /** When it may turn true (a row dated ahead of now reaches it). */
  readonly entry: SqlFragment;
  /** True for a window or relative date (rows leave it), false for a count over all history. */
  readonly windowed: boolean;
}

/** What the instants are computed against. */
export interface NextChangeContext {
  /** Quoted schema of the CRM's tables. */
  readonly schema: string;
  /** The evaluation time: instants strictly after it are returned. */
  readonly asOf: Date;
}

const interval = (ms: number) => `${ms} milliseconds`;

/** Instants of a count of rows (`alias`, `column`) of `table` matching `filter`, windowed when `ms` > 0. */
function countLeaf(
  table: string,
  alias: string,
  filter: { where: string[]; params: unknown[] },
  ms: number,
  positive: boolean,
  ctx: NextChangeContext,
): Leaf {
  const col = `${alias}.occurred_at`;
  const base = `from ${ctx.schema}."${table}" ${alias} where ${[`${alias}.contact_id = c.id`, ...filter.where].join(" and ")}`;
  const now = ctx.asOf.toISOString();
  const entry = { sql: `(select min(${col}) ${base} and ${col} > ?::timestamptz)`, params: [...filter.params, now] };
  if (ms === 0) return { positive, exit: undefined, entry, windowed: false };
  return {
    positive,
    exit: {
      sql: `((select min(${col}) ${base} and ${col} > ?::timestamptz and ${col} <= ?::timestamptz) + ?::interval)`,
      params: [...filter.params, new Date(ctx.asOf.getTime() - ms).toISOString(), now, interval(ms)],
    },
    entry,
    windowed: true,
  };
}

/** Instants of WITHIN_LAST over a time expression `x` of the contact row. */
function withinLeaf(x: string, ms: number, positive: boolean, ctx: NextChangeContext): Leaf {
  const now = ctx.asOf.toISOString();
  return {
    positive,
    exit: {
      sql: `(case when ${x} > ?::timestamptz and ${x} <= ?::timestamptz then ${x} + ?::interval end)`,
      params: [new Date(ctx.asOf.getTime() - ms).toISOString(), now, interval(ms)],
    },
    entry: { sql: `(case when ${x} > ?::timestamptz then ${x} end)`, params: [now] },
    windowed: true,
  };
}

/** Instants of WITHIN_LAST over the timestamp attribute `key` (any of its entries). */
function attributeLeaf(key: string, ms: number, positive: boolean, ctx: NextChangeContext): Leaf {
  const v = "(a->'value'->>'timestampValue')::timestamptz";
  const from = "from jsonb_array_elements(c.attributes) a where a->>'key' = ?";
  const now = ctx.asOf.toISOString();
  return {
    positive,
    exit: {
      sql: `(select min(${v}) + ?::interval ${from} and ${v} > ?::timestamptz and ${v} <= ?::timestamptz)`,
      params: [interval(ms), key, new Date(ctx.asOf.getTime() - ms).toISOString(), now],
    },
    entry: { sql: `(select min(${v}) ${from} and ${v} > ?::timestamptz)`, params: [key, now] },
    windowed: true,
  };
}

/** Collects the time-relative leaves of a (validated) tree with their polarity. */
function collect(cond: Condition | undefined, positive: boolean, ctx: NextChangeContext, out: Leaf[]): void {
  const node = cond?.node;
  switch (node?.case) {
    case "group": {
      const flip = node.value.booleanOperator === BooleanOperator.NOT;
      for (const c of node.value.conditions) collect(c, flip ? !positive : positive, ctx, out);
      return;
    }
    case "behaviour":
      out.push(
        countLeaf("crm_interaction", "i", behaviourFilter(node.value), durationMs(node.value.within), positive, ctx),
      );
      return;
    case "conversion":
      out.push(
        countLeaf(
          "crm_scoring_conversion",
          "v",
          conversionFilter(node.value),
          durationMs(node.value.within),
          positive,
          ctx,
        ),
      );
      return;
    case "field": {
      const fc = node.value;
      if (fc.comparison !== ComparisonOperator.WITHIN_LAST) return;
      const v = fc.values[0]?.kind;
      const ms = v?.case === "durationValue" ? durationMs(v.value) : 0;
      // An empty window (d = 0) is never true, whatever the time.
      if (ms <= 0) return;
      const ref = fc.field?.ref;
      if (ref?.case === "contactField") {
        const x = timeColumns[ref.value];
        if (x !== undefined) out.push(withinLeaf(x, ms, positive, ctx));
      } else if (ref?.case === "attributeKey") {
        out.push(attributeLeaf(ref.value, ms, positive, ctx));
      }
      return;
    }
    default:
      return;
  }
}

/** How a tree depends on time: not at all, through rows dated ahead only, or through windows. */
export type TimeDependence = "none" | "ahead" | "windowed";

/** The time dependence of a (validated) tree. */
export function timeDependence(cond: Condition | undefined): TimeDependence {
  const leaves: Leaf[] = [];
  collect(cond, true, { schema: '"x"', asOf: new Date(0) }, leaves);
  if (leaves.some((l) => l.windowed)) return "windowed";
  return leaves.length > 0 ? "ahead" : "none";
}

/** `least(…)` of fragments (PostgreSQL's least ignores nulls), or undefined for none. */
function least(parts: readonly SqlFragment[]): SqlFragment | undefined {
  if (parts.length === 0) return undefined;
  return { sql: `least(${parts.map((p) => p.sql).join(", ")})`, params: parts.flatMap((p) => p.params) };
}

/**
 * One contact's next instant (SQL over the contact row `c`, epoch milliseconds or null), ignoring
 * membership: what the incremental path uses to bring a segment's due time forward when an event
 * adds, say, a back-dated interaction. Undefined when the tree does not depend on time.
 */
export function contactNextChangeSql(cond: Condition | undefined, ctx: NextChangeContext): SqlFragment | undefined {
  const leaves: Leaf[] = [];
  collect(cond, true, ctx, leaves);
  const l = least(leaves.flatMap((x) => (x.exit === undefined ? [x.entry] : [x.exit, x.entry])));
  return l === undefined ? undefined : { sql: `(extract(epoch from ${l.sql}) * 1000)::float8`, params: l.params };
}

/**
 * A query returning `next` (epoch milliseconds or null): the earliest instant after `asOf` at which
 * any contact's membership of segment `key` can change by time alone, from the members stored now
 * (run it after the evaluation). Undefined when the tree does not depend on time.
 */
export function segmentNextChangeSql(
  cond: Condition | undefined,
  key: string,
  ctx: NextChangeContext,
): SqlFragment | undefined {
  const leaves: Leaf[] = [];
  collect(cond, true, ctx, leaves);
  const member = "sm.contact_id is not null";
  const gated = (f: SqlFragment, members: boolean): SqlFragment => ({
    sql: `case when ${members ? member : `not (${member})`} then ${f.sql} end`,
    params: f.params,
  });
  // A positive leaf turning false can only make a member leave, turning true a non-member join;
  // a negative leaf the other way round.
  const l = least(
    leaves.flatMap((x) => [...(x.exit === undefined ? [] : [gated(x.exit, x.positive)]), gated(x.entry, !x.positive)]),
  );
  if (l === undefined) return undefined;
  return {
    sql:
      `select (extract(epoch from min(${l.sql})) * 1000)::float8 as next from ${ctx.schema}."crm_contact" c ` +
      `left join ${ctx.schema}."crm_segment_member" sm on sm.segment_key = ? and sm.contact_id = c.id ` +
      "where c.merged_into_id is null",
    params: [...l.params, key],
  };
}

/** How far apart scheduled evaluations are kept (schedule.ts reads these from the configuration). */
export interface RecheckLimits {
  /**
   * Least time between a segment's evaluation and its next scheduled one, ms: bounds the work a
   * busy segment causes (an exit every few seconds), and is therefore the staleness allowed beyond
   * the exact instant.
   */
  readonly minMs: number;
  /**
   * Most time between scheduled evaluations of a windowed segment, ms: a safety net for changes no
   * event announced (a contact edited by hand in the database, a row written by another path).
   */
  readonly maxMs: number;
}

/** Defaults: one minute and fifteen minutes. */
export const defaultRecheckLimits: RecheckLimits = { minMs: 60_000, maxMs: 15 * 60_000 };

/**
 * The due time to store after an evaluation at `at`: null when time alone cannot change the
 * segment (no time-relative leaf, or only counts over all history with no row dated ahead);
 * otherwise the next instant, no sooner than `at + minMs`, and for windows no later than
 * `at + maxMs`.
 */
export function dueAfter(
  dependence: TimeDependence,
  nextMs: number | null,
  at: Date,
  limits: RecheckLimits,
): Date | null {
  if (dependence === "none") return null;
  const floor = at.getTime() + limits.minMs;
  const cap = dependence === "windowed" ? at.getTime() + limits.maxMs : Number.POSITIVE_INFINITY;
  if (nextMs === null) return Number.isFinite(cap) ? new Date(cap) : null;
  return new Date(Math.min(cap, Math.max(floor, Math.ceil(nextMs))));
}
