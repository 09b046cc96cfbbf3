/**
 * The contract's protovalidate rules, in one place for the server's validation interceptor and for
 * callers that reach a skill without it (in-process calls, the offline CLI, tests): the first
 * violation names the field; the answer lists at most {@link maxReportedViolations} of them, so an
 * error stays small however many elements of a request break a rule.
 */
import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { pathToString } from "@bufbuild/protobuf/reflect";
import { createValidator, type Violation } from "@bufbuild/protovalidate";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequest_FieldViolationSchema, BadRequestSchema } from "../../gen/google/rpc/error_details_pb.ts";
import { InvalidInputError } from "./errors.ts";

const validator = createValidator();

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
 * The violations of `message`, or undefined when it keeps every rule. `ruleFields` names the field
 * a message-level (CEL) rule is about, by rule id, since such a violation has no field path of its own.
 */
export function findViolations<D extends DescMessage>(
  schema: D,
  message: MessageShape<D>,
  ruleFields: Readonly<Record<string, string>> = {},
): ContractViolations | undefined {
  const result = validator.validate(schema, message);
  if (result.kind === "valid") return undefined;
  if (result.kind === "error") throw result.error;
  if (result.violations.length === 0) return undefined;
  return {
    fields: result.violations.map((v) => fieldOf(v, ruleFields)),
    messages: result.violations.map((v) => v.message),
  };
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
