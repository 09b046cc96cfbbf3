/** The Data agent: collection, conversions, attribution, cohorts, database sync. */
import { DataService } from "../../gen/mesh/data/v1/data_service_pb.ts";
import { defineAgent } from "../../lib/server/agent.ts";

/** Data agent module; its skills come in later issues and answer UNIMPLEMENTED until then. */
export const dataAgent = defineAgent({
  id: "data",
  service: DataService,
  implemented: [],
  create: () => ({}),
});
