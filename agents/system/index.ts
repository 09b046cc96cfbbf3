/** The System agent: API management, retries, caching, security, backups, config history, scaling. */
import { SystemService } from "../../gen/mesh/system/v1/system_service_pb.ts";
import { defineAgent } from "../../lib/server/agent.ts";

/** System agent module; its skills come in later issues and answer UNIMPLEMENTED until then. */
export const systemAgent = defineAgent({
  id: "system",
  service: SystemService,
  implemented: [],
  create: () => ({}),
});
