/** Domain events the System agent publishes (through the transactional outbox). */
import { RetryPolicyChangedSchema } from "../../gen/mesh/system/v1/system_events_pb.ts";
import { defineEvent } from "../../lib/bus/index.ts";

/** A retry policy was created or replaced: `<prefix>.events.system.retry_policy_changed`. */
export const RetryPolicyChangedEvent = defineEvent("system", "retry_policy_changed", RetryPolicyChangedSchema);
