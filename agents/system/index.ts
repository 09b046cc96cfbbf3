/** The System agent: API management, retries, caching, security, backups, config history, scaling. */
import { SystemService } from "../../gen/mesh/system/v1/system_service_pb.ts";
import { defineAgent } from "../../lib/server/agent.ts";
import { manageRetries } from "./skills/manage-retries.ts";

/** System agent module; the skills not listed in `implemented` answer UNIMPLEMENTED. */
export const systemAgent = defineAgent({
  id: "system",
  service: SystemService,
  implemented: ["ManageRetries"],
  create: (deps) => ({
    manageRetries: (req) => manageRetries(deps, req),
  }),
});
