/**
 * Guards of pipeline transitions, evaluated on a deal, its primary contact and the contact's
 * interactions. Each guard yields pass/fail with a reason naming the observed value, so a refused
 * move explains itself. Interaction counts are delegated to the caller (`countInteractions`), which
 * answers them with one indexed SQL count each; everything else is in memory.
 */
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import {
  AttributeValueSchema,
  type BehaviourCondition,
  BooleanOperator,
  BooleanOperatorSchema,
  type Condition,
  ContactFieldSchema,
  DealField,
  type DealFieldComparison,
  DealFieldSchema,
  type FieldComparison,
  InteractionTypeSchema,
  type StageGuard,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { maxConditionDepth } from "../conditions.ts";
import type { CrmContactRow, CrmDealRow } from "../entities.ts";
import { attributeFieldValue, compareContactField, durationMs } from "../fields.ts";
import { type Comparison, compareValue, enumName, type FieldValue, showValue } from "./compare.ts";

/** What guards read. */
export interface GuardContext {
  /** The deal, as stored before the move. */
  deal: CrmDealRow;
  /** The deal's primary contact. */
  contact: CrmContactRow;
  /** Evaluation time. */
  now: Date;
  /** Number of the contact's interactions matching `cond` that happened at or after `since`. */
  countInteractions(cond: BehaviourCondition, since: Date | undefined): Promise<number>;
  /** The contact's lead score under the stored default model; undefined when there is none. */
  leadScore(contactId: string): Promise<number | undefined>;
}

/** An attribute list stored as protobuf JSON, by key. */
function attributeValue(attributes: readonly unknown[], key: string): FieldValue {
  for (const a of attributes) {
    const attr = a as { key?: string; value?: JsonValue };
    if (attr.key !== key || attr.value === undefined) continue;
    return attributeFieldValue(fromJson(AttributeValueSchema, attr.value));
  }
  return undefined;
}

/** A standard deal field's value. */
export function dealFieldValue(deal: CrmDealRow, field: DealField): FieldValue {
  switch (field) {
    case DealField.NAME:
      return deal.name;
    case DealField.AMOUNT:
      return deal.currencyCode == null ? undefined : Number(deal.amountUnits ?? 0) + (deal.amountNanos ?? 0) / 1e9;
    case DealField.CURRENCY_CODE:
      return deal.currencyCode ?? undefined;
    case DealField.EXPECTED_CLOSE:
      return deal.expectedClose ?? undefined;
    case DealField.OWNER_EMAIL:
      return deal.ownerEmail;
    case DealField.SOURCE:
      return deal.source;
    case DealField.CREATED_AT:
      return deal.createdAt;
    default:
      return undefined;
  }
}

function compareDealField(ctx: GuardContext, cmp: DealFieldComparison): Comparison {
  const ref = cmp.field?.ref;
  const value =
    ref?.case === "dealField"
      ? dealFieldValue(ctx.deal, ref.value)
      : ref?.case === "attributeKey"
        ? attributeValue(ctx.deal.attributes, ref.value)
        : undefined;
  const name =
    ref?.case === "dealField" ? `deal ${enumName(DealFieldSchema, ref.value)}` : `deal attribute ${ref?.value ?? "?"}`;
  const r = compareValue(value, cmp.comparison, cmp.values, { now: ctx.now });
  return { passed: r.passed, reason: `${name}: ${r.reason}` };
}

function compareContactCondition(ctx: GuardContext, cmp: FieldComparison): Comparison {
  const ref = cmp.field?.ref;
  const name =
    ref?.case === "contactField"
      ? `contact ${enumName(ContactFieldSchema, ref.value)}`
      : `contact attribute ${ref?.value ?? "?"}`;
  const r = compareContactField(ctx.contact, (key) => attributeValue(ctx.contact.attributes, key), cmp, ctx.now);
  return { passed: r.passed, reason: `${name}: ${r.reason}` };
}

function describeBehaviour(b: BehaviourCondition): string {
  const parts = [`${enumName(InteractionTypeSchema, b.interactionType)} interactions`];
  if (b.urlContains !== "") parts.push(`with URL containing ${JSON.stringify(b.urlContains)}`);
  return parts.join(" ");
}

async function behaviour(ctx: GuardContext, b: BehaviourCondition, since: Date | undefined): Promise<Comparison> {
  const n = await ctx.countInteractions(b, since);
  const passed = n >= b.minCount;
  const when = since === undefined ? "ever" : `since ${since.toISOString()}`;
  return { passed, reason: `${n} ${describeBehaviour(b)} ${when}, need at least ${b.minCount}` };
}

/** Evaluates a rule tree on the deal's contact. */
export async function evaluateCondition(ctx: GuardContext, cond: Condition, depth = 0): Promise<Comparison> {
  if (depth >= maxConditionDepth) {
    return { passed: false, reason: `rule tree deeper than ${maxConditionDepth} levels` };
  }
  const node = cond.node;
  switch (node.case) {
    case "field":
      return compareContactCondition(ctx, node.value);
    case "behaviour": {
      const within = durationMs(node.value.within);
      return behaviour(ctx, node.value, within > 0 ? new Date(ctx.now.getTime() - within) : undefined);
    }
    case "group": {
      const g = node.value;
      const results: Comparison[] = [];
      for (const child of g.conditions) {
        const r = await evaluateCondition(ctx, child, depth + 1);
        results.push(r);
        // Short-circuit the way a reader expects: AND stops at the first failure, OR at the first pass.
        if (g.booleanOperator === BooleanOperator.AND && !r.passed) break;
        if (g.booleanOperator === BooleanOperator.OR && r.passed) break;
      }
      const passed =
        g.booleanOperator === BooleanOperator.AND
          ? results.every((r) => r.passed)
          : g.booleanOperator === BooleanOperator.OR
            ? results.some((r) => r.passed)
            : !(results[0]?.passed ?? false);
      const op = enumName(BooleanOperatorSchema, g.booleanOperator);
      return { passed, reason: `${op}(${results.map((r) => r.reason).join("; ")})` };
    }
    default:
      return { passed: false, reason: "empty condition" };
  }
}

/** Evaluates one guard of a transition. */
export async function evaluateGuard(ctx: GuardContext, guard: StageGuard): Promise<Comparison> {
  const check = guard.check;
  switch (check.case) {
    case "dealField":
      return compareDealField(ctx, check.value);
    case "contactCondition":
      return evaluateCondition(ctx, check.value);
    case "minTimeInStage": {
      const needed = durationMs(check.value);
      const spent = ctx.now.getTime() - ctx.deal.stageEnteredAt.getTime();
      return {
        passed: spent >= needed,
        reason: `${Math.floor(spent / 1000)}s in stage ${ctx.deal.stage}, need ${needed / 1000}s`,
      };
    }
    case "interactionSinceStageEntry": {
      const within = durationMs(check.value.within);
      const entered = ctx.deal.stageEnteredAt.getTime();
      const since = within > 0 ? Math.max(entered, ctx.now.getTime() - within) : entered;
      return behaviour(ctx, check.value, new Date(since));
    }
    case "minLeadScore": {
      const score = await ctx.leadScore(ctx.deal.contact);
      if (score === undefined) {
        return { passed: false, reason: "the contact has no lead score under a stored default scoring model" };
      }
      return {
        passed: score >= check.value,
        reason: `lead score ${showValue(score)}, need at least ${check.value}`,
      };
    }
    default:
      return { passed: false, reason: "guard has no check" };
  }
}
