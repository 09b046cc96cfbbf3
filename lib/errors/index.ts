/**
 * Domain errors and their mapping to Connect codes, in one place, and the contract's protovalidate
 * rules for callers that reach a skill without the server's validation interceptor.
 */
export {
  type ContractViolations,
  checkContract,
  findViolations,
  maxReportedViolations,
  violationsError,
} from "./contract.ts";
export {
  ConflictError,
  FailedPreconditionError,
  InvalidInputError,
  maxErrorDetailBytes,
  maxErrorMessageChars,
  NotFoundError,
  toConnectError,
} from "./errors.ts";
export { outageOf, retryAfter, unavailable } from "./outage.ts";
