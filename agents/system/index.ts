/** The System agent: API management, retries, caching, security, backups, config history, scaling. */

import type { EntitySchema } from "@mikro-orm/postgresql";
import { SystemService } from "../../gen/mesh/system/v1/system_service_pb.ts";
import { defineAgent } from "../../lib/server/index.ts";
import { systemEntities } from "./entities.ts";
import { migrations } from "./migrations/index.ts";
import { manageRetries } from "./skills/manage-retries.ts";

/** System agent module; the skills not listed in `implemented` answer UNIMPLEMENTED. */
export const systemAgent = defineAgent({
  id: "system",
  service: SystemService,
  implemented: ["ManageRetries"],
  data: { entities: systemEntities as readonly EntitySchema[], migrations },
  create: (deps) => ({
    manageRetries: (req) => manageRetries(deps, req),
  }),
});
