/**
 * Guards of pipeline transitions, evaluated on a deal, its primary contact and the contact's
 * interactions. Each guard yields pass/fail with a reason naming the observed value, so a refused
 * move explains itself. Interaction counts are delegated to the caller (`countInteractions`), which
 * answers them with one indexed SQL count each; everything else is in memory.
 */
import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { PostalAddressSchema } from "../../../gen/mesh/common/v1/types_pb.ts";
import {
  type AttributeValue,
  AttributeValueSchema,
  type BehaviourCondition,
  BooleanOperator,
  BooleanOperatorSchema,
  type Condition,
  ContactField,
  ContactFieldSchema,
  DealField,
  type DealFieldComparison,
  DealFieldSchema,
  type FieldComparison,
  InteractionTypeSchema,
  LifecycleStageSchema,
  type StageGuard,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { CrmContactRow, CrmDealRow } from "../entities.ts";
import { type Comparison, compareValue, enumName, type FieldValue, showValue } from "./compare.ts";

/** Deepest rule tree evaluated (the contract allows 16 levels). */
const maxDepth = 16;

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

/** Milliseconds of a protobuf duration. */
function ms(d: { seconds: bigint; nanos: number } | undefined): number {
  return d === undefined ? 0 : Number(d.seconds) * 1000 + d.nanos / 1e6;
}

/** An attribute list stored as protobuf JSON, by key. */
function attributeValue(attributes: readonly unknown[], key: string): FieldValue {
  for (const a of attributes) {
    const attr = a as { key?: string; value?: JsonValue };
    if (attr.key !== key || attr.value === undefined) continue;
    const v = fromJson(AttributeValueSchema, attr.value).kind;
    switch (v.case) {
      case "stringValue":
      case "numberValue":
      case "boolValue":
        return v.value;
      case "intValue":
        return Number(v.value);
      case "timestampValue":
        return timestampDate(v.value);
      case "durationValue":
        return ms(v.value) / 1000;
      default:
        return undefined;
    }
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

/** A standard contact field's value. */
export function contactFieldValue(c: CrmContactRow, field: ContactField): FieldValue {
  const address = c.address != null ? fromJson(PostalAddressSchema, c.address as JsonValue) : undefined;
  switch (field) {
    case ContactField.GIVEN_NAME:
      return c.givenName;
    case ContactField.FAMILY_NAME:
      return c.familyName;
    case ContactField.FULL_NAME:
      return [c.givenName, c.familyName].filter((s) => s !== "").join(" ");
    case ContactField.EMAIL:
      return c.email ?? "";
    case ContactField.EMAIL_DOMAIN:
      return (c.email ?? "").split("@")[1] ?? "";
    case ContactField.PHONE:
      return c.phone;
    case ContactField.COMPANY:
      return c.company;
    case ContactField.TITLE:
      return c.title;
    case ContactField.STREET:
      return address?.streetLines[0] ?? "";
    case ContactField.POSTAL_CODE:
      return address?.postalCode ?? "";
    case ContactField.CITY:
      return c.city || (address?.locality ?? "");
    case ContactField.REGION:
      return c.region || (address?.region ?? "");
    case ContactField.COUNTRY_CODE:
      return address?.countryCode ?? "";
    case ContactField.SOURCE:
      return c.source;
    case ContactField.LIFECYCLE_STAGE:
      return c.lifecycleStage === 0 ? "" : enumName(LifecycleStageSchema, c.lifecycleStage);
    case ContactField.CREATED_AT:
      return c.createdAt;
    case ContactField.UPDATED_AT:
      return c.updatedAt;
    default:
      return undefined;
  }
}

/** Lifecycle-stage operands may name the stage without its enum prefix (`CUSTOMER`). */
function lifecycleOperands(values: readonly AttributeValue[]): AttributeValue[] {
  return values.map((v) =>
    v.kind.case === "stringValue" && !/^lifecycle_stage_/i.test(v.kind.value)
      ? create(AttributeValueSchema, { kind: { case: "stringValue", value: `LIFECYCLE_STAGE_${v.kind.value}` } })
      : v,
  );
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

function compareContactField(ctx: GuardContext, cmp: FieldComparison): Comparison {
  const ref = cmp.field?.ref;
  let value: FieldValue;
  let values = cmp.values;
  let name: string;
  if (ref?.case === "contactField") {
    value = contactFieldValue(ctx.contact, ref.value);
    if (ref.value === ContactField.LIFECYCLE_STAGE) values = lifecycleOperands(values);
    name = `contact ${enumName(ContactFieldSchema, ref.value)}`;
  } else {
    value = ref?.case === "attributeKey" ? attributeValue(ctx.contact.attributes, ref.value) : undefined;
    name = `contact attribute ${ref?.value ?? "?"}`;
  }
  const r = compareValue(value, cmp.comparison, values, { now: ctx.now, caseSensitive: cmp.caseSensitive });
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
  if (depth >= maxDepth) return { passed: false, reason: `rule tree deeper than ${maxDepth} levels` };
  const node = cond.node;
  switch (node.case) {
    case "field":
      return compareContactField(ctx, node.value);
    case "behaviour": {
      const within = ms(node.value.within);
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
      const needed = ms(check.value);
      const spent = ctx.now.getTime() - ctx.deal.stageEnteredAt.getTime();
      return {
        passed: spent >= needed,
        reason: `${Math.floor(spent / 1000)}s in stage ${ctx.deal.stage}, need ${needed / 1000}s`,
      };
    }
    case "interactionSinceStageEntry": {
      const within = ms(check.value.within);
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
