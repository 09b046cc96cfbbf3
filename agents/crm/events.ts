/** Domain events the CRM agent publishes (through the transactional outbox). */
import { InteractionTrackedSchema } from "../../gen/mesh/crm/v1/crm_events_pb.ts";
import { defineEvent } from "../../lib/bus/index.ts";

/** A new interaction was appended to the log: `<prefix>.events.crm.interaction_tracked`. */
export const InteractionTracked = defineEvent("crm", "interaction_tracked", InteractionTrackedSchema);
