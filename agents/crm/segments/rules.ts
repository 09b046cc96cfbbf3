/**
 * Rule segmentation at request time: every segment's rule tree compiled into one SQL query over the
 * population, which returns the counts of every segment and one keyset page of members (ordered by
 * contact id) in a single round trip. With `first_match_only` a contact counts only for the first
 * segment it matches, in listed order.
 */
import type { RuleSegmentation } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { EntityManager } from "../../../lib/db/index.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { compileCondition } from "./compile.ts";
import type { SqlFragment } from "./sql.ts";

/** The result of evaluating rule segments. */
export interface RuleEvaluation {
  readonly population: number;
  readonly unassigned: number;
  /** Members per segment, in definition order. */
  readonly counts: readonly number[];
  /** Page of members: contact id and the indexes of the segments it belongs to. */
  readonly page: readonly { id: string; segments: readonly number[] }[];
  /** True when more members follow the page. */
  readonly more: boolean;
}

/** The membership flag expressions of each segment (compiled; validated: throws on a bad tree). */
export function compileSegments(rules: RuleSegmentation, schema: string, asOf: Date): SqlFragment[] {
  if (rules.segments.length === 0) throw new InvalidInputError("rules.segments", "needs at least one segment");
  const keys = new Set<string>();
  return rules.segments.map((s, i) => {
    if (!/^[a-z0-9][a-z0-9_.-]{0,63}$/.test(s.key)) {
      throw new InvalidInputError(`rules.segments[${i}].key`, "must be lower kebab case, at most 64 characters");
    }
    if (keys.has(s.key)) throw new InvalidInputError(`rules.segments[${i}].key`, "segment keys must be unique");
    keys.add(s.key);
    return compileCondition(s.condition, `rules.segments[${i}].condition`, { asOf, schema });
  });
}

/** Runs the compiled segments over `population` as one query. */
export async function evaluateRules(
  em: EntityManager,
  population: SqlFragment,
  segments: readonly SqlFragment[],
  opts: { firstMatchOnly: boolean; afterId: string | undefined; pageSize: number; countsOnly: boolean },
): Promise<RuleEvaluation> {
  const n = segments.length;
  const idx = [...Array(n).keys()];
  const flags = idx.map((i) => `coalesce(${segments[i]?.sql}, false) as s${i}`).join(", ");
  const flag = (i: number) =>
    opts.firstMatchOnly && i > 0
      ? `(s${i} and not (${idx
          .slice(0, i)
          .map((j) => `s${j}`)
          .join(" or ")}))`
      : `s${i}`;
  const firsts = idx.map((i) => `${flag(i)} as f${i}`).join(", ");
  const any = idx.map((i) => `f${i}`).join(" or ");
  const pageParams: unknown[] = [];
  let page = "'[]'::json";
  if (!opts.countsOnly) {
    const after = opts.afterId === undefined ? "" : " and id > ?::uuid";
    if (opts.afterId !== undefined) pageParams.push(opts.afterId);
    pageParams.push(opts.pageSize + 1);
    page =
      `(select coalesce(json_agg(json_build_object('id', id, 'm', json_build_array(${idx.map((i) => `f${i}`).join(", ")})) order by id), '[]'::json) ` +
      `from (select * from f where (${any})${after} order by id limit ?) p)`;
  }
  const sql =
    `with pop as (${population.sql}), ` +
    `m as materialized (select c.id, ${flags} from pop c), ` +
    `f as (select id, ${firsts} from m) ` +
    `select (select json_build_object('population', count(*), 'unassigned', count(*) filter (where not (${any})), ` +
    `'counts', json_build_array(${idx.map((i) => `count(*) filter (where f${i})`).join(", ")})) from f) as summary, ${page} as page`;
  const params = [...population.params, ...segments.flatMap((s) => s.params), ...pageParams];
  // JIT compilation of this plan (correlated subqueries make its estimated cost high) takes longer
  // than running it, so it is turned off for this transaction.
  const rows = (await em.transactional(async (tx) => {
    await tx.execute("set local jit = off");
    return tx.execute(sql, params);
  })) as {
    summary: { population: number; unassigned: number; counts: number[] };
    page: { id: string; m: boolean[] }[];
  }[];
  const row = rows[0];
  if (row === undefined) throw new Error("segment query returned no row");
  const members = row.page.slice(0, opts.pageSize).map((p) => ({
    id: p.id,
    segments: p.m.flatMap((flag, i) => (flag ? [i] : [])),
  }));
  return {
    population: Number(row.summary.population),
    unassigned: Number(row.summary.unassigned),
    counts: row.summary.counts.map(Number),
    page: members,
    more: row.page.length > opts.pageSize,
  };
}
