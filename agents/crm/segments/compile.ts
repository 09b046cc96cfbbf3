/**
 * Rule trees (mesh.crm.v1.Condition) compiled to one boolean SQL expression over a contact row
 * aliased `c` (the columns of `crm_contact`). Every operand travels as a bound parameter (`?`,
 * quoted by the driver layer), never spliced into the text; only identifiers the compiler owns
 * (column names, the schema) appear in the SQL.
 *
 * Semantics:
 * - AND / OR / NOT groups are SQL's; every leaf is wrapped in `coalesce(…, false)`, so a missing
 *   value makes a positive comparison false and NOT of it true (two-valued logic, as a reader
 *   expects). The negative operators (NOT_EQUALS, NOT_IN, NOT_CONTAINS) are NOT of the positive
 *   one: a contact without the field "is not equal" to anything.
 * - Text compares ignore case and common Latin accents unless `case_sensitive` (lower() and a
 *   fixed translate() table, applied to the column and the operand alike).
 * - Behaviour conditions count the contact's interactions of a type (channel, URL part) in the
 *   window (as_of − within, as_of]; the count stops at `min_count` (a LIMIT inside the subquery),
 *   so a contact with a long history costs no more than the threshold.
 * - Score and conversion conditions read lead scoring's tables (score-sql.ts).
 *
 * A malformed tree (an operand type the field cannot take, an unknown stage name, a tree deeper
 * than 16 levels) throws InvalidInputError naming the field's path, before anything runs.
 */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  type AttributeValue,
  type BehaviourCondition,
  ComparisonOperator,
  ComparisonOperatorSchema,
  type Condition,
  ContactField,
  type FieldComparison,
  LifecycleStageSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { compileConversion, compileScore } from "./score-sql.ts";
import { type CompileContext, durationMs, type SqlFragment, windowSql } from "./sql.ts";

export type { CompileContext, SqlFragment };

/** Deepest nesting a rule tree may have (the contract's limit). */
export const maxDepth = 16;

const accented = "áàâäãåāăąçćčďđéèêëēėęěíìîïīįłñńňóòôöõøōőŕřśšşťúùûüūůűųýÿźžż";
const plain = "aaaaaaaaaccddeeeeeeeeiiiiiilnnnoooooooorrsssstuuuuuuuuyyzzz";

/** The case- and accent-folded form of a text expression. */
function fold(expr: string, caseSensitive: boolean): string {
  return caseSensitive ? expr : `translate(lower(${expr}), '${accented}', '${plain}')`;
}

/** Text columns of the contact, by field. */
const textColumns: Partial<Record<ContactField, string>> = {
  [ContactField.GIVEN_NAME]: "c.given_name",
  [ContactField.FAMILY_NAME]: "c.family_name",
  [ContactField.FULL_NAME]: "btrim(c.given_name || ' ' || c.family_name)",
  [ContactField.EMAIL]: "coalesce(lower(c.email), '')",
  [ContactField.EMAIL_DOMAIN]: "split_part(coalesce(lower(c.email), ''), '@', 2)",
  [ContactField.PHONE]: "c.phone",
  [ContactField.COMPANY]: "c.company",
  [ContactField.TITLE]: "c.title",
  [ContactField.STREET]: "coalesce(c.address->'streetLines'->>0, '')",
  [ContactField.POSTAL_CODE]: "coalesce(c.address->>'postalCode', '')",
  [ContactField.CITY]: "coalesce(nullif(c.city, ''), c.address->>'locality', '')",
  [ContactField.REGION]: "coalesce(nullif(c.region, ''), c.address->>'region', '')",
  [ContactField.COUNTRY_CODE]: "coalesce(c.address->>'countryCode', '')",
  [ContactField.SOURCE]: "c.source",
};

/** Time columns of the contact, by field (next-change.ts schedules WITHIN_LAST over them too). */
export const timeColumns: Partial<Record<ContactField, string>> = {
  [ContactField.CREATED_AT]: "c.created_at",
  [ContactField.UPDATED_AT]: "c.updated_at",
};

/** SQL types an operand can be compared as. */
type OperandKind = "text" | "number" | "bool" | "time";

const textOnly = new Set<ComparisonOperator>([
  ComparisonOperator.CONTAINS,
  ComparisonOperator.NOT_CONTAINS,
  ComparisonOperator.STARTS_WITH,
  ComparisonOperator.ENDS_WITH,
]);
const ordering = new Set<ComparisonOperator>([
  ComparisonOperator.GREATER_THAN,
  ComparisonOperator.GREATER_THAN_OR_EQUAL,
  ComparisonOperator.LESS_THAN,
  ComparisonOperator.LESS_THAN_OR_EQUAL,
  ComparisonOperator.BETWEEN,
]);

/** Expected number of operands of a comparison, as the contract states it. */
function checkArity(fc: FieldComparison, path: string): void {
  const n = fc.values.length;
  const op = fc.comparison;
  const ok =
    op === ComparisonOperator.IS_SET || op === ComparisonOperator.IS_NOT_SET
      ? n === 0
      : op === ComparisonOperator.BETWEEN
        ? n === 2
        : op === ComparisonOperator.IN || op === ComparisonOperator.NOT_IN
          ? n >= 1
          : n === 1;
  if (!ok) throw new InvalidInputError(`${path}.values`, "the number of values does not fit the comparison operator");
  if (op === ComparisonOperator.UNSPECIFIED || ComparisonOperatorSchema.values.every((e) => e.number !== op)) {
    throw new InvalidInputError(`${path}.comparison`, "must be a defined comparison operator");
  }
}

/** The parameter of a text, number, bool or time operand, and its kind. */
function operand(v: AttributeValue | undefined, path: string): { kind: OperandKind | "duration"; param: unknown } {
  switch (v?.kind.case) {
    case "stringValue":
      return { kind: "text", param: v.kind.value };
    case "numberValue":
      if (!Number.isFinite(v.kind.value)) throw new InvalidInputError(path, "must be a finite number");
      return { kind: "number", param: String(v.kind.value) };
    case "intValue":
      return { kind: "number", param: v.kind.value.toString() };
    case "boolValue":
      return { kind: "bool", param: v.kind.value };
    case "timestampValue":
      return { kind: "time", param: timestampDate(v.kind.value).toISOString() };
    case "durationValue":
      return { kind: "duration", param: undefined };
    default:
      throw new InvalidInputError(path, "needs a value");
  }
}

/** The SQL cast placeholder of an operand kind. */
function placeholder(kind: OperandKind, caseSensitive: boolean): string {
  switch (kind) {
    case "text":
      return fold("?::text", caseSensitive);
    case "number":
      return "?::numeric";
    case "bool":
      return "?::boolean";
    case "time":
      return "?::timestamptz";
  }
}

/**
 * The positive comparison `expr <op> operands` (negative operators are compiled by the caller as
 * NOT of their positive twin). `expr` is already folded for text.
 */
function positive(
  op: ComparisonOperator,
  expr: string,
  kind: OperandKind,
  params: readonly unknown[],
  caseSensitive: boolean,
): SqlFragment {
  const ph = placeholder(kind, caseSensitive);
  switch (op) {
    case ComparisonOperator.EQUALS:
    case ComparisonOperator.NOT_EQUALS:
      return { sql: `${expr} = ${ph}`, params };
    case ComparisonOperator.GREATER_THAN:
      return { sql: `${expr} > ${ph}`, params };
    case ComparisonOperator.GREATER_THAN_OR_EQUAL:
      return { sql: `${expr} >= ${ph}`, params };
    case ComparisonOperator.LESS_THAN:
      return { sql: `${expr} < ${ph}`, params };
    case ComparisonOperator.LESS_THAN_OR_EQUAL:
      return { sql: `${expr} <= ${ph}`, params };
    case ComparisonOperator.BETWEEN:
      return { sql: `${expr} between ${ph} and ${ph}`, params };
    case ComparisonOperator.IN:
    case ComparisonOperator.NOT_IN:
      return { sql: `${expr} in (${params.map(() => ph).join(", ")})`, params };
    case ComparisonOperator.CONTAINS:
    case ComparisonOperator.NOT_CONTAINS:
      return { sql: `strpos(${expr}, ${ph}) > 0`, params };
    case ComparisonOperator.STARTS_WITH:
      return { sql: `starts_with(${expr}, ${ph})`, params };
    case ComparisonOperator.ENDS_WITH:
      return { sql: `right(${expr}, char_length(${ph})) = ${ph}`, params: [...params, ...params] };
    default:
      throw new Error(`no positive form of comparison ${op}`);
  }
}

const negative = new Set<ComparisonOperator>([
  ComparisonOperator.NOT_EQUALS,
  ComparisonOperator.NOT_IN,
  ComparisonOperator.NOT_CONTAINS,
]);

/** Wraps a positive comparison as the operator asks: coalesced, and negated for NOT_*. */
function leaf(op: ComparisonOperator, f: SqlFragment): SqlFragment {
  const sql = `coalesce(${f.sql}, false)`;
  return { sql: negative.has(op) ? `not ${sql}` : sql, params: f.params };
}

/** Operands of a comparison, all of one kind; the kind is returned. */
function operands(
  fc: FieldComparison,
  path: string,
  allowed: readonly OperandKind[],
): { kind: OperandKind; params: unknown[] } {
  let kind: OperandKind | undefined;
  const params: unknown[] = [];
  fc.values.forEach((v, i) => {
    const o = operand(v, `${path}.values[${i}]`);
    if (o.kind === "duration") {
      throw new InvalidInputError(`${path}.values[${i}]`, "a duration is only an operand of WITHIN_LAST");
    }
    if (!allowed.includes(o.kind)) {
      throw new InvalidInputError(`${path}.values[${i}]`, `must be a ${allowed.join(" or ")} value for this field`);
    }
    if (kind !== undefined && o.kind !== kind) {
      throw new InvalidInputError(`${path}.values[${i}]`, "all values of a comparison must have the same type");
    }
    kind = o.kind;
    params.push(o.param);
  });
  return { kind: kind ?? allowed[0] ?? "text", params };
}

/** A WITHIN_LAST comparison of a time expression: (as_of − d, as_of]. */
function withinLast(expr: string, fc: FieldComparison, path: string, ctx: CompileContext): SqlFragment {
  const v = fc.values[0];
  if (fc.values.length !== 1 || v?.kind.case !== "durationValue") {
    throw new InvalidInputError(`${path}.values`, "WITHIN_LAST takes one duration value");
  }
  const ms = durationMs(v.kind.value);
  if (ms < 0) throw new InvalidInputError(`${path}.values[0]`, "must not be negative");
  const from = new Date(ctx.asOf.getTime() - ms).toISOString();
  return {
    sql: `coalesce(${expr} > ?::timestamptz and ${expr} <= ?::timestamptz, false)`,
    params: [from, ctx.asOf.toISOString()],
  };
}

/** The LifecycleStage number of a stage operand: its enum name (with or without prefix) or number. */
function stageNumber(v: AttributeValue | undefined, path: string): number {
  if (v?.kind.case === "intValue") {
    const n = Number(v.kind.value);
    if (LifecycleStageSchema.values.some((e) => e.number === n)) return n;
  } else if (v?.kind.case === "stringValue") {
    const name = v.kind.value
      .trim()
      .toUpperCase()
      .replace(/^LIFECYCLE_STAGE_/, "");
    const found = LifecycleStageSchema.values.find((e) => e.localName === name || e.name === `LIFECYCLE_STAGE_${name}`);
    if (found !== undefined) return found.number;
  }
  throw new InvalidInputError(path, "must name a lifecycle stage, for example LIFECYCLE_STAGE_LEAD");
}

/** A comparison of a standard contact field. */
function compileStandardField(
  field: ContactField,
  fc: FieldComparison,
  path: string,
  ctx: CompileContext,
): SqlFragment {
  const op = fc.comparison;
  const text = textColumns[field];
  const time = timeColumns[field];
  if (op === ComparisonOperator.WITHIN_LAST) {
    if (time === undefined) throw new InvalidInputError(`${path}.comparison`, "WITHIN_LAST needs a time field");
    return withinLast(time, fc, path, ctx);
  }
  if (text !== undefined) {
    if (op === ComparisonOperator.IS_SET) return { sql: `${text} <> ''`, params: [] };
    if (op === ComparisonOperator.IS_NOT_SET) return { sql: `${text} = ''`, params: [] };
    const { params } = operands(fc, path, ["text"]);
    return leaf(op, positive(op, fold(text, fc.caseSensitive), "text", params, fc.caseSensitive));
  }
  if (time !== undefined) {
    if (op === ComparisonOperator.IS_SET) return { sql: `${time} is not null`, params: [] };
    if (op === ComparisonOperator.IS_NOT_SET) return { sql: `${time} is null`, params: [] };
    if (textOnly.has(op))
      throw new InvalidInputError(`${path}.comparison`, "is a text comparison; the field is a time");
    const { params } = operands(fc, path, ["time"]);
    return leaf(op, positive(op, time, "time", params, true));
  }
  if (field === ContactField.LIFECYCLE_STAGE) {
    if (op === ComparisonOperator.IS_SET) return { sql: "c.lifecycle_stage <> 0", params: [] };
    if (op === ComparisonOperator.IS_NOT_SET) return { sql: "c.lifecycle_stage = 0", params: [] };
    if (textOnly.has(op)) throw new InvalidInputError(`${path}.comparison`, "is a text comparison; the stage is not");
    const params = fc.values.map((v, i) => String(stageNumber(v, `${path}.values[${i}]`)));
    return leaf(op, positive(op, "c.lifecycle_stage", "number", params, true));
  }
  throw new InvalidInputError(`${path}.field.contact_field`, "must be a defined contact field");
}

/**
 * A comparison of a custom attribute, stored as `[{key, value: {stringValue | numberValue | …}}]`
 * protobuf JSON: the operands' type picks which typed member of the value is compared.
 */
function compileAttribute(key: string, fc: FieldComparison, path: string, ctx: CompileContext): SqlFragment {
  const op = fc.comparison;
  const has = (pred: string, params: readonly unknown[]): SqlFragment => ({
    sql: `exists (select 1 from jsonb_array_elements(c.attributes) a where a->>'key' = ? and ${pred})`,
    params: [key, ...params],
  });
  const value = (kind: OperandKind): string => {
    switch (kind) {
      case "text":
        return "(a->'value'->>'stringValue')";
      case "number":
        return "coalesce((a->'value'->>'numberValue')::numeric, (a->'value'->>'intValue')::numeric)";
      case "bool":
        return "(a->'value'->>'boolValue')::boolean";
      case "time":
        return "(a->'value'->>'timestampValue')::timestamptz";
    }
  };
  const set = "coalesce(a->'value'->>'stringValue', 'set') <> ''";
  if (op === ComparisonOperator.IS_SET) return has(set, []);
  if (op === ComparisonOperator.IS_NOT_SET) {
    const f = has(set, []);
    return { sql: `not ${f.sql}`, params: f.params };
  }
  if (op === ComparisonOperator.WITHIN_LAST) {
    const w = withinLast(value("time"), fc, path, ctx);
    return has(w.sql, w.params);
  }
  const allowed: OperandKind[] = textOnly.has(op)
    ? ["text"]
    : ordering.has(op)
      ? ["text", "number", "time"]
      : ["text", "number", "bool", "time"];
  const { kind, params } = operands(fc, path, allowed);
  const expr = kind === "text" ? fold(value("text"), fc.caseSensitive) : value(kind);
  const p = positive(op, expr, kind, params, fc.caseSensitive);
  const f = has(p.sql, p.params);
  return { sql: negative.has(op) ? `not ${f.sql}` : f.sql, params: f.params };
}

/** A field comparison. */
function compileField(fc: FieldComparison, path: string, ctx: CompileContext): SqlFragment {
  checkArity(fc, path);
  const ref = fc.field?.ref;
  if (ref?.case === "contactField") return compileStandardField(ref.value, fc, path, ctx);
  if (ref?.case === "attributeKey") {
    if (!/^[a-z][a-z0-9_]{0,63}$/.test(ref.value)) {
      throw new InvalidInputError(`${path}.field.attribute_key`, "must be lower snake case");
    }
    return compileAttribute(ref.value, fc, path, ctx);
  }
  throw new InvalidInputError(`${path}.field`, "needs a contact field or an attribute key");
}

/**
 * Which interactions (aliased `i`) a behaviour condition counts, apart from contact and window;
 * shared with next-change.ts, which finds when they enter or leave the window.
 */
export function behaviourFilter(b: BehaviourCondition): { where: string[]; params: unknown[] } {
  const where = ["i.type = ?"];
  const params: unknown[] = [b.interactionType];
  if (b.channel !== 0) {
    where.push("i.channel = ?");
    params.push(b.channel);
  }
  if (b.urlContains !== "") {
    where.push("strpos(lower(i.url), lower(?::text)) > 0");
    params.push(b.urlContains);
  }
  return { where, params };
}

/** A behaviour condition: at least `min_count` matching interactions in the window. */
function compileBehaviour(b: BehaviourCondition, path: string, ctx: CompileContext): SqlFragment {
  if (b.interactionType === 0) throw new InvalidInputError(`${path}.interaction_type`, "is required");
  if (b.minCount < 1) throw new InvalidInputError(`${path}.min_count`, "must be at least 1");
  const f = behaviourFilter(b);
  const where = ["i.contact_id = c.id", ...f.where];
  const params: unknown[] = [...f.params];
  const w = windowSql("i.occurred_at", b.within, `${path}.within`, ctx);
  where.push(w.sql);
  params.push(...w.params);
  return {
    sql: `(select count(*) from (select 1 from ${ctx.schema}."crm_interaction" i where ${where.join(" and ")} limit ?) n) >= ?`,
    params: [...params, b.minCount, b.minCount],
  };
}

/** Compiles a rule tree rooted at `path` (for error messages, e.g. `rules.segments[0].condition`). */
export function compileCondition(
  cond: Condition | undefined,
  path: string,
  ctx: CompileContext,
  depth = 1,
): SqlFragment {
  if (depth > maxDepth) throw new InvalidInputError(path, `rule trees nest at most ${maxDepth} levels`);
  const node = cond?.node;
  switch (node?.case) {
    case "group": {
      const g = node.value;
      const at = `${path}.group`;
      if (g.conditions.length === 0) throw new InvalidInputError(`${at}.conditions`, "needs at least one condition");
      const parts = g.conditions.map((c, i) => compileCondition(c, `${at}.conditions[${i}]`, ctx, depth + 1));
      const params = parts.flatMap((p) => p.params);
      switch (g.booleanOperator) {
        case 1:
          return { sql: `(${parts.map((p) => p.sql).join(" and ")})`, params };
        case 2:
          return { sql: `(${parts.map((p) => p.sql).join(" or ")})`, params };
        case 3: {
          if (parts.length !== 1)
            throw new InvalidInputError(`${at}.conditions`, "a NOT group takes exactly one condition");
          return { sql: `(not ${parts[0]?.sql})`, params };
        }
        default:
          throw new InvalidInputError(`${at}.boolean_operator`, "must be AND, OR or NOT");
      }
    }
    case "field":
      return compileField(node.value, `${path}.field`, ctx);
    case "behaviour":
      return compileBehaviour(node.value, `${path}.behaviour`, ctx);
    case "score":
      return compileScore(node.value, `${path}.score`, ctx);
    case "conversion":
      return compileConversion(node.value, `${path}.conversion`, ctx);
    default:
      throw new InvalidInputError(path, "needs a group, field, behaviour, score or conversion condition");
  }
}
