/** The CRM agent: contacts, interactions, scoring, pipeline, appointments, forecasting. */
import { CrmService } from "../../gen/mesh/crm/v1/crm_service_pb.ts";
import { defineAgent } from "../../lib/server/agent.ts";

/** Crm agent module; its skills come in later issues and answer UNIMPLEMENTED until then. */
export const crmAgent = defineAgent({
  id: "crm",
  service: CrmService,
  implemented: [],
  create: () => ({}),
});
