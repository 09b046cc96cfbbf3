/**
 * What modules contribute to every server whatever their placement (`MeshModule.everywhere`): started
 * before the hosted modules, so their retry policies are attached to the server's mesh client and bus
 * before any consumer or call runs, and stopped after the hosted modules' work.
 */
import type { Running } from "../bus/index.ts";
import type { EverywhereDeps, MeshModule } from "./agent.ts";
import { type Backbone, domainOf } from "./backbone.ts";

/**
 * Runs `everywhere` of every module that has one, with the module's database when this server opened
 * its domain; attaches the retry policies they supply to `deps.client` and `deps.bus`. Stopping
 * detaches them and stops the modules' background work.
 */
export async function startEverywhere(
  modules: readonly MeshModule[],
  deps: Omit<EverywhereDeps, "db">,
  backbone: Pick<Backbone, "databases">,
): Promise<Running> {
  const detach: Array<() => void> = [];
  const running: Running[] = [];
  const stop = async (): Promise<void> => {
    for (const off of detach.splice(0)) off();
    for (const r of running.splice(0)) await r.stop();
  };
  try {
    for (const m of modules) {
      if (m.everywhere === undefined) continue;
      const db = backbone.databases.get(domainOf(deps.catalog, m.placedWith));
      const parts = await m.everywhere({ ...deps, db });
      running.push(...(parts.running ?? []));
      const { skillRetry, redelivery } = parts.retryPolicies ?? {};
      if (skillRetry !== undefined) {
        const off = deps.client.useSkillRetryPolicy?.(skillRetry);
        if (off !== undefined) detach.push(off);
      }
      if (redelivery !== undefined) detach.push(deps.bus.useRedeliveryPolicy(redelivery));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { stop };
}
