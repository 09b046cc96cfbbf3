/**
 * The contract's protovalidate rules, in one place for the server's validation interceptor and for
 * callers that reach a skill without it (in-process calls, the offline CLI, tests): the first
 * violation names the field; the answer lists at most {@link maxReportedViolations} of them, so an
 * error stays small however many elements of a request break a rule, and validating a large
 * request stops at its first violation, so the work stays bounded too.
 */
import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { pathToString, type ReflectMessage, reflect } from "@bufbuild/protobuf/reflect";
import { createValidator, type Violation } from "@bufbuild/protovalidate";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequest_FieldViolationSchema, BadRequestSchema } from "../../gen/google/rpc/error_details_pb.ts";
import { InvalidInputError } from "./errors.ts";

const validator = createValidator();
const firstViolation = createValidator({ failFast: true });

/**
 * Most list elements and map entries a request may hold for every violation to be reported; past
 * it, only the first is (collecting all of a million broken elements' violations once ran a
 * server out of memory).
 */
export const maxFullyValidatedElements = 10_000;

/** Violations an error reports at most (in its message count and its google.rpc.BadRequest detail). */
export const maxReportedViolations = 20;
/** Longest description of one reported violation, in characters. */
const maxDescriptionChars = 200;

/** What a message breaks: every violation's field path and message, in order. */
export interface ContractViolations {
  /** Field path of each violation (the rule's field for message-level rules listed in ruleFields). */
  fields: string[];
  /** Message of each violation, same order. */
  messages: string[];
}

function fieldOf(v: Violation, ruleFields: Readonly<Record<string, string>>): string {
  const path = pathToString(v.field);
  const field = ruleFields[v.ruleId];
  return field === undefined ? path || "request" : path ? `${path}.${field}` : field;
}

/**
 * The violations of `message` (all of them when it holds at most {@link maxFullyValidatedElements}
 * list elements and map entries, else the first), or undefined when it keeps every rule. `ruleFields` names the field
 * a message-level (CEL) rule is about, by rule id, since such a violation has no field path of its own.
 */
export function findViolations<D extends DescMessage>(
  schema: D,
  message: MessageShape<D>,
  ruleFields: Readonly<Record<string, string>> = {},
): ContractViolations | undefined {
  // Fail fast first: most requests are valid, and an invalid one costs no more than the walk to
  // its first violation. Only a request small enough is validated again for all its violations.
  const first = firstViolation.validate(schema, message);
  if (first.kind === "valid") return undefined;
  if (first.kind === "error") throw first.error;
  const result =
    elementsWithin(reflect(schema, message), maxFullyValidatedElements) >= 0
      ? validator.validate(schema, message)
      : first;
  if (result.kind === "valid") return undefined;
  if (result.kind === "error") throw result.error;
  if (result.violations.length === 0) return undefined;
  return {
    fields: result.violations.map((v) => fieldOf(v, ruleFields)),
    messages: result.violations.map((v) => v.message),
  };
}

/** `budget` less the list elements and map entries in `m` (nested ones too), or -1 once it runs out. */
function elementsWithin(m: ReflectMessage, budget: number): number {
  let left = budget;
  for (const f of m.fields) {
    if (!m.isSet(f)) continue;
    if (f.fieldKind === "list") {
      const list = m.get(f);
      left -= list.size;
      if (left < 0) return -1;
      if (f.listKind === "message") {
        for (const item of list) {
          left = elementsWithin(item as ReflectMessage, left);
          if (left < 0) return -1;
        }
      }
    } else if (f.fieldKind === "map") {
      const map = m.get(f);
      left -= map.size;
      if (left < 0) return -1;
      if (f.mapKind === "message") {
        for (const [, v] of map) {
          left = elementsWithin(v as ReflectMessage, left);
          if (left < 0) return -1;
        }
      }
    } else if (f.fieldKind === "message") {
      left = elementsWithin(m.get(f), left);
      if (left < 0) return -1;
    }
  }
  return left;
}

/**
 * INVALID_ARGUMENT for `violations`: the message names the first (`field: message`, "… and K more"),
 * the google.rpc.BadRequest detail lists the first {@link maxReportedViolations}.
 */
export function violationsError(violations: ContractViolations): ConnectError {
  const { fields, messages } = violations;
  const n = fields.length;
  const first = `${fields[0]}: ${(messages[0] ?? "").slice(0, maxDescriptionChars)}`;
  const more = n > 1 ? ` … and ${n - 1} more violation${n > 2 ? "s" : ""}` : "";
  const fieldViolations = fields.slice(0, maxReportedViolations).map((field, i) =>
    create(BadRequest_FieldViolationSchema, {
      field,
      description: (messages[i] ?? "").slice(0, maxDescriptionChars),
    }),
  );
  return new ConnectError(`${first}${more}`, Code.InvalidArgument, undefined, [
    { desc: BadRequestSchema, value: create(BadRequestSchema, { fieldViolations }) },
  ]);
}

/** Throws InvalidInputError for the first rule `message` breaks (see {@link findViolations}). */
export function checkContract<D extends DescMessage>(
  schema: D,
  message: MessageShape<D>,
  ruleFields: Readonly<Record<string, string>> = {},
): void {
  const found = findViolations(schema, message, ruleFields);
  if (found === undefined) return;
  throw new InvalidInputError(found.fields[0] as string, found.messages[0] as string);
}
