/** The Data agent: collection, conversions, attribution, cohorts, database sync. */
import type { EntitySchema } from "@mikro-orm/postgresql";
import { DataService } from "../../gen/mesh/data/v1/data_service_pb.ts";
import { createClock } from "../../lib/cache/index.ts";
import { defineAgent } from "../../lib/server/index.ts";
import { conversionEntities } from "./conversion-entities.ts";
import { dataEntities } from "./entities.ts";
import { migrations } from "./migrations/index.ts";
import { synchronizeDatabase } from "./skills/synchronize-database.ts";
import { trackConversion } from "./skills/track-conversion.ts";

/** Data agent module; the skills not listed in `implemented` answer UNIMPLEMENTED. */
export const dataAgent = defineAgent({
  id: "data",
  service: DataService,
  implemented: ["SynchronizeDatabase", "TrackConversion"],
  data: { entities: [...dataEntities, ...conversionEntities] as readonly EntitySchema[], migrations },
  create: (deps) => {
    // The hybrid logical clock of this instance: one per process (a module is started once), so
    // every version this node stamps is unique and ordered; its node id is the instance's own
    // (MESH_NODE_ID, else one made unique per instance and kept across restarts; see lib/cache).
    const clock = createClock(deps.nodeId);
    return {
      synchronizeDatabase: (req) => synchronizeDatabase({ ...deps, clock }, req),
      trackConversion: (req) => trackConversion(deps, req),
    };
  },
});
