/**
 * Typed comparisons of a field value with `AttributeValue` operands, as `ComparisonOperator`
 * defines them: the value decides the type (text, number, time, flag) and operands are read as that
 * type. Text compares ignoring case and accents unless asked otherwise (Unicode NFD, combining
 * marks removed). The negative operators are the negation of their positive ones, so an unset value
 * is NOT_EQUALS anything. Every outcome carries the reason a person reads in the guard evaluation.
 */

import type { DescEnum } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  type AttributeValue,
  ComparisonOperator,
  ComparisonOperatorSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";

/** The protobuf name of an enum value (`COMPARISON_OPERATOR_EQUALS`), or its number when unknown. */
export function enumName(schema: DescEnum, value: number): string {
  return schema.values.find((v) => v.number === value)?.name ?? String(value);
}

/** A field value: unset, text, number, time or flag. */
export type FieldValue = undefined | string | number | Date | boolean;

/** Outcome of one comparison. */
export interface Comparison {
  /** True when the comparison holds. */
  passed: boolean;
  /** Why, with the observed value. */
  reason: string;
}

/** Lower-cased text without accents. */
export function foldText(s: string): string {
  return s.normalize("NFD").replace(/\p{M}/gu, "").toLowerCase();
}

/** The value as a person reads it. */
export function showValue(v: FieldValue): string {
  if (v === undefined) return "unset";
  if (v instanceof Date) return v.toISOString();
  if (typeof v === "string") return JSON.stringify(v);
  return String(v);
}

function showOperand(o: AttributeValue): string {
  const k = o.kind;
  switch (k.case) {
    case "timestampValue":
      return timestampDate(k.value).toISOString();
    case "durationValue":
      return `${Number(k.value.seconds) + k.value.nanos / 1e9}s`;
    case "stringValue":
      return JSON.stringify(k.value);
    case undefined:
      return "unset";
    default:
      return String(k.value);
  }
}

/** Thrown when an operand cannot be read as the value's type. */
class OperandTypeError extends Error {}

function asNumber(o: AttributeValue): number {
  const k = o.kind;
  if (k.case === "numberValue") return k.value;
  if (k.case === "intValue") return Number(k.value);
  if (k.case === "stringValue" && k.value.trim() !== "" && Number.isFinite(Number(k.value))) return Number(k.value);
  throw new OperandTypeError(`operand ${showOperand(o)} is not a number`);
}

function asTime(o: AttributeValue): number {
  const k = o.kind;
  if (k.case === "timestampValue") return timestampDate(k.value).getTime();
  if (k.case === "stringValue" && !Number.isNaN(Date.parse(k.value))) return Date.parse(k.value);
  throw new OperandTypeError(`operand ${showOperand(o)} is not a timestamp`);
}

function asText(o: AttributeValue, caseSensitive: boolean): string {
  const k = o.kind;
  let s: string;
  if (k.case === "stringValue") s = k.value;
  else if (k.case === "numberValue" || k.case === "intValue" || k.case === "boolValue") s = String(k.value);
  else throw new OperandTypeError(`operand ${showOperand(o)} is not text`);
  return caseSensitive ? s : foldText(s);
}

function asBool(o: AttributeValue): boolean {
  const k = o.kind;
  if (k.case === "boolValue") return k.value;
  if (k.case === "stringValue" && (k.value === "true" || k.value === "false")) return k.value === "true";
  throw new OperandTypeError(`operand ${showOperand(o)} is not a flag`);
}

function durationMs(o: AttributeValue): number {
  const k = o.kind;
  if (k.case !== "durationValue") throw new OperandTypeError(`operand ${showOperand(o)} is not a duration`);
  return Number(k.value.seconds) * 1000 + k.value.nanos / 1e6;
}

const op = ComparisonOperator;

/** Positive form of a negative operator, and whether it was negated. */
function positive(o: ComparisonOperator): { op: ComparisonOperator; negated: boolean } {
  switch (o) {
    case op.NOT_EQUALS:
      return { op: op.EQUALS, negated: true };
    case op.NOT_IN:
      return { op: op.IN, negated: true };
    case op.NOT_CONTAINS:
      return { op: op.CONTAINS, negated: true };
    case op.IS_NOT_SET:
      return { op: op.IS_SET, negated: true };
    default:
      return { op: o, negated: false };
  }
}

/** Orders two values of one type: negative, zero or positive. */
type Order = (a: AttributeValue) => number;

/** Compares `value` with `operands` under `operator`; `now` anchors WITHIN_LAST. */
export function compareValue(
  value: FieldValue,
  operator: ComparisonOperator,
  operands: readonly AttributeValue[],
  opts: { caseSensitive?: boolean; now: Date },
): Comparison {
  const { op: o, negated } = positive(operator);
  const name = enumName(ComparisonOperatorSchema, operator);
  const shown = `${showValue(value)} ${name} ${operands.map(showOperand).join(", ")}`.trim();
  let held: boolean;
  try {
    held = holds(value, o, operands, opts);
  } catch (err) {
    if (err instanceof OperandTypeError) return { passed: false, reason: `${err.message} (value ${showValue(value)})` };
    throw err;
  }
  const passed = negated ? !held : held;
  return { passed, reason: `${shown}: ${passed ? "holds" : "does not hold"}` };
}

function holds(
  value: FieldValue,
  o: ComparisonOperator,
  operands: readonly AttributeValue[],
  opts: { caseSensitive?: boolean; now: Date },
): boolean {
  if (o === op.IS_SET) return value !== undefined && value !== "";
  if (value === undefined) return false;
  const first = operands[0];
  if (o === op.WITHIN_LAST) {
    if (!(value instanceof Date) || first === undefined) return false;
    const age = opts.now.getTime() - value.getTime();
    return age >= 0 && age <= durationMs(first);
  }
  let order: Order;
  let text: string | undefined;
  if (typeof value === "string") {
    const cs = opts.caseSensitive === true;
    text = cs ? value : foldText(value);
    const t = text;
    order = (a) => {
      const b = asText(a, cs);
      return t < b ? -1 : t > b ? 1 : 0;
    };
  } else if (typeof value === "number") {
    order = (a) => value - asNumber(a);
  } else if (value instanceof Date) {
    order = (a) => value.getTime() - asTime(a);
  } else {
    order = (a) => Number(value) - Number(asBool(a));
  }
  switch (o) {
    case op.EQUALS:
      return first !== undefined && order(first) === 0;
    case op.IN:
      return operands.some((a) => order(a) === 0);
    case op.GREATER_THAN:
      return first !== undefined && order(first) > 0;
    case op.GREATER_THAN_OR_EQUAL:
      return first !== undefined && order(first) >= 0;
    case op.LESS_THAN:
      return first !== undefined && order(first) < 0;
    case op.LESS_THAN_OR_EQUAL:
      return first !== undefined && order(first) <= 0;
    case op.BETWEEN: {
      const [lo, hi] = operands;
      return lo !== undefined && hi !== undefined && order(lo) >= 0 && order(hi) <= 0;
    }
    case op.CONTAINS:
    case op.STARTS_WITH:
    case op.ENDS_WITH: {
      if (text === undefined) throw new OperandTypeError(`${enumName(ComparisonOperatorSchema, o)} needs a text value`);
      if (first === undefined) return false;
      const needle = asText(first, opts.caseSensitive === true);
      return o === op.CONTAINS
        ? text.includes(needle)
        : o === op.STARTS_WITH
          ? text.startsWith(needle)
          : text.endsWith(needle);
    }
    default:
      throw new OperandTypeError(`operator ${enumName(ComparisonOperatorSchema, o)} is not supported`);
  }
}
