/** The System agent: API management, retries, caching, security, backups, config history, scaling. */

import { createContextValues } from "@connectrpc/connect";
import type { EntitySchema } from "@mikro-orm/postgresql";
import { SystemService } from "../../gen/mesh/system/v1/system_service_pb.ts";
import { defineAgent, type EverywhereDeps, type EverywhereParts } from "../../lib/server/index.ts";
import { singleAttemptKey } from "../../lib/transport/index.ts";
import { systemEntities } from "./entities.ts";
import { startLivePolicies } from "./live-policies.ts";
import { migrations } from "./migrations/index.ts";
import { manageRetries } from "./skills/manage-retries.ts";

/**
 * Every server applies the stored retry policies from a live copy: the server that opened the System
 * agent's schema reads it in process (and waits for that first read, so its consumers and calls
 * start with the policies); any other server asks the System agent wherever it runs, in the
 * background and until it answers, since that server may start later.
 */
async function retryPoliciesEverywhere(deps: EverywhereDeps): Promise<EverywhereParts> {
  const { db } = deps;
  const live = await startLivePolicies({
    bus: deps.bus,
    log: deps.log,
    manageRetries:
      db === undefined
        ? (req, signal) =>
            // The copy retries until the System agent answers: one attempt per try, no client retries on top.
            deps.client
              .agent(SystemService)
              .manageRetries(req, { signal, contextValues: createContextValues().set(singleAttemptKey, true) })
        : (req) => manageRetries({ ...deps, db }, req),
  });
  if (db !== undefined) await live.firstAttempt;
  return { retryPolicies: live.source, running: [live] };
}

/** System agent module; the skills not listed in `implemented` answer UNIMPLEMENTED. */
export const systemAgent = defineAgent({
  id: "system",
  service: SystemService,
  implemented: ["ManageRetries"],
  data: { entities: systemEntities as readonly EntitySchema[], migrations },
  create: (deps) => ({
    manageRetries: (req) => manageRetries(deps, req),
  }),
  everywhere: retryPoliciesEverywhere,
});
