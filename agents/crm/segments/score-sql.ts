/**
 * The SQL fragments of rule leaves that read lead scoring's tables (agents/crm/scoring owns them):
 * `crm_lead_score` (one current score per contact, written by event-driven lead scoring) and
 * `crm_scoring_conversion` (the conversions the CRM learned of). Kept apart from compile.ts so a
 * change of those tables touches this file only.
 */
import {
  ComparisonOperator,
  type ConversionCondition,
  type ScoreCondition,
  ScoreMeasure,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { type CompileContext, type SqlFragment, windowSql } from "./sql.ts";

/** Score column of each measure. */
const columns: Record<ScoreMeasure, string> = {
  [ScoreMeasure.UNSPECIFIED]: "s.score",
  [ScoreMeasure.TOTAL]: "s.score",
  [ScoreMeasure.FIT]: "s.fit_score",
  [ScoreMeasure.BEHAVIOUR]: "s.behaviour_score",
};

/** A score condition: an EXISTS over the contact's stored score row. */
export function compileScore(sc: ScoreCondition, path: string, ctx: CompileContext): SqlFragment {
  const column = columns[sc.measure];
  if (column === undefined) throw new InvalidInputError(`${path}.measure`, "must be a defined score measure");
  const where = ["s.contact_id = c.id"];
  const params: unknown[] = [];
  if (sc.grades.length > 0) {
    where.push(`s.grade in (${sc.grades.map(() => "?").join(", ")})`);
    params.push(...sc.grades);
  }
  const n = sc.values.length;
  const arity = (want: number) => {
    if (n !== want)
      throw new InvalidInputError(`${path}.values`, "the number of values does not fit the comparison operator");
  };
  sc.values.forEach((v, i) => {
    if (!Number.isFinite(v)) throw new InvalidInputError(`${path}.values[${i}]`, "must be a finite number");
  });
  const exists = (pred: string | undefined, values: readonly number[]): SqlFragment => ({
    sql: `exists (select 1 from ${ctx.schema}."crm_lead_score" s where ${[...where, ...(pred === undefined ? [] : [pred])].join(" and ")})`,
    params: [...params, ...values],
  });
  const ops: Partial<Record<ComparisonOperator, string>> = {
    [ComparisonOperator.EQUALS]: "=",
    [ComparisonOperator.GREATER_THAN]: ">",
    [ComparisonOperator.GREATER_THAN_OR_EQUAL]: ">=",
    [ComparisonOperator.LESS_THAN]: "<",
    [ComparisonOperator.LESS_THAN_OR_EQUAL]: "<=",
  };
  switch (sc.comparison) {
    case ComparisonOperator.IS_SET:
      arity(0);
      return exists(undefined, []);
    case ComparisonOperator.IS_NOT_SET: {
      arity(0);
      const f = exists(undefined, []);
      return { sql: `not ${f.sql}`, params: f.params };
    }
    case ComparisonOperator.NOT_EQUALS: {
      arity(1);
      const f = exists(`${column} = ?`, sc.values);
      return { sql: `not ${f.sql}`, params: f.params };
    }
    case ComparisonOperator.BETWEEN:
      arity(2);
      return exists(`${column} between ? and ?`, sc.values);
    default: {
      const op = ops[sc.comparison];
      if (op === undefined) {
        throw new InvalidInputError(`${path}.comparison`, "must be EQUALS to BETWEEN, IS_SET or IS_NOT_SET");
      }
      arity(1);
      return exists(`${column} ${op} ?`, sc.values);
    }
  }
}

/**
 * Which conversions (aliased `v`) a conversion condition counts, apart from contact and window;
 * shared with next-change.ts.
 */
export function conversionFilter(cc: ConversionCondition): { where: string[]; params: unknown[] } {
  return cc.conversionName === ""
    ? { where: [], params: [] }
    : { where: ["v.conversion_name = ?"], params: [cc.conversionName] };
}

/** A conversion condition: at least `min_count` recorded conversions (of a name) in the window. */
export function compileConversion(cc: ConversionCondition, path: string, ctx: CompileContext): SqlFragment {
  if (cc.minCount < 1) throw new InvalidInputError(`${path}.min_count`, "must be at least 1");
  const f = conversionFilter(cc);
  const where = ["v.contact_id = c.id", ...f.where];
  const params: unknown[] = [...f.params];
  const w = windowSql("v.occurred_at", cc.within, `${path}.within`, ctx);
  where.push(w.sql);
  params.push(...w.params);
  return {
    sql: `(select count(*) from (select 1 from ${ctx.schema}."crm_scoring_conversion" v where ${where.join(" and ")} limit ?) n) >= ?`,
    params: [...params, cc.minCount, cc.minCount],
  };
}
