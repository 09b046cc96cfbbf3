/** The Data agent: collection, conversions, attribution, cohorts, database sync. */
import { DataService } from "../../gen/mesh/data/v1/data_service_pb.ts";
import { createClock } from "../../lib/cache/index.ts";
import { defineAgent } from "../../lib/server/agent.ts";
import { synchronizeDatabase } from "./skills/synchronize-database.ts";
import { trackConversion } from "./skills/track-conversion.ts";

/**
 * This process's hybrid logical clock: one per process, so every version this node stamps is
 * unique and ordered. Its node id is MESH_NODE_ID (empty counts as unset), else `technical-<pid>`.
 */
export const nodeClock = createClock(
  process.env.MESH_NODE_ID !== undefined && process.env.MESH_NODE_ID !== ""
    ? process.env.MESH_NODE_ID
    : `technical-${process.pid}`,
);

/** Data agent module; the skills not listed in `implemented` answer UNIMPLEMENTED. */
export const dataAgent = defineAgent({
  id: "data",
  service: DataService,
  implemented: ["SynchronizeDatabase", "TrackConversion"],
  create: (deps) => ({
    synchronizeDatabase: (req) => synchronizeDatabase({ ...deps, clock: nodeClock }, req),
    trackConversion: (req) => trackConversion(deps, req),
  }),
});
