/**
 * The contract's protovalidate rules, applied inside a skill for callers that reach it without the
 * server's validation interceptor (in-process calls, the offline CLI, tests): the first violation
 * becomes an {@link InvalidInputError} naming the field, as the interceptor would answer.
 */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { pathToString } from "@bufbuild/protobuf/reflect";
import { createValidator } from "@bufbuild/protovalidate";
import { InvalidInputError } from "./errors.ts";

const validator = createValidator();

/**
 * Throws InvalidInputError for the first rule `message` breaks. `ruleFields` names the field a
 * message-level (CEL) rule is about, by rule id, since such a violation has no field path of its own.
 */
export function checkContract<D extends DescMessage>(
  schema: D,
  message: MessageShape<D>,
  ruleFields: Readonly<Record<string, string>> = {},
): void {
  const result = validator.validate(schema, message);
  if (result.kind === "valid") return;
  if (result.kind === "error") throw result.error;
  const v = result.violations[0];
  if (v === undefined) return;
  const path = pathToString(v.field);
  const field = ruleFields[v.ruleId];
  throw new InvalidInputError(field === undefined ? path || "request" : path ? `${path}.${field}` : field, v.message);
}
