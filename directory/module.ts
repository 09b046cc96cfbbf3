/**
 * The directory as a module of the mesh: placed with the SEO agent (its server serves the site and
 * the visitor endpoints, its schema holds the directory's tables), it serves DirectoryService and
 * reaches the SEO, Optimization, CRM and Data agents only through their generated clients.
 */
import type { EntitySchema } from "@mikro-orm/postgresql";
import { DirectoryService } from "../gen/mesh/directory/v1/directory_service_pb.ts";
import { defineModule } from "../lib/server/index.ts";
import { directoryEntities, loadGeoNamesCities, selectCities } from "./data/index.ts";
import { migrations } from "./migrations/index.ts";
import { createDirectoryService } from "./service.ts";
import { createVisitorRoutes, type VisitorCity } from "./visitors.ts";

/** The directory module. */
export const directoryModule = defineModule({
  id: "directory",
  placedWith: "seo",
  data: { entities: directoryEntities as readonly EntitySchema[], migrations },
  start(deps) {
    const { client, log, config, db } = deps;
    let cities: Promise<ReadonlyMap<string, VisitorCity>> | undefined;
    return {
      services: [
        {
          service: DirectoryService,
          impl: createDirectoryService({ db, client, log, siteDir: config.siteDir, siteOrigin: config.siteOrigin }),
        },
      ],
      routes: createVisitorRoutes({
        client,
        log,
        siteDir: config.siteDir,
        cities: () => {
          cities ??= Promise.resolve(
            new Map(selectCities(loadGeoNamesCities()).map((c) => [c.id, { name: c.name, stateCode: c.stateCode }])),
          );
          return cities;
        },
      }),
    };
  },
});
