/** The CRM agent: contacts, interactions, scoring, pipeline, appointments, forecasting. */

import type { EntitySchema } from "@mikro-orm/postgresql";
import { CrmService } from "../../gen/mesh/crm/v1/crm_service_pb.ts";
import { defineAgent } from "../../lib/server/index.ts";
import { crmEntities } from "./entities.ts";
import { migrations } from "./migrations/index.ts";
import { detectDuplicates } from "./skills/detect-duplicates.ts";
import { modelCustomerLifecycle } from "./skills/model-customer-lifecycle.ts";
import { trackInteraction } from "./skills/track-interaction.ts";

/** Crm agent module; skills not listed in `implemented` answer UNIMPLEMENTED until their issue lands. */
export const crmAgent = defineAgent({
  id: "crm",
  service: CrmService,
  implemented: ["TrackInteraction", "DetectDuplicates", "ModelCustomerLifecycle"],
  data: { entities: crmEntities as readonly EntitySchema[], migrations },
  create: (deps) => ({
    trackInteraction: (req) => trackInteraction(deps, req),
    detectDuplicates: (req, ctx) => detectDuplicates({}, req, ctx),
    modelCustomerLifecycle: (req, ctx) => modelCustomerLifecycle(deps, req, ctx),
  }),
});
