/**
 * Watches what a server depends on — the PostgreSQL database of each domain it opened and the NATS
 * connection — so health tells the truth during an outage: `mesh.dependency.postgres.<schema>` and
 * `mesh.dependency.nats` go NOT_SERVING while unreachable (and the server as a whole with them), and
 * SERVING again when they return. The database is probed with `select 1` on an interval (a pool only
 * notices a dead server when a query needs it); NATS reports its own disconnects and reconnects.
 */
import type { Bus } from "../bus/index.ts";
import type { Database } from "../db/index.ts";
import type { Logger } from "../log/index.ts";
import type { ServingStatus } from "./health.ts";

/** Options of {@link watchDependencies}. */
export interface DependencyWatchOptions {
  databases: ReadonlyMap<string, Database>;
  bus: Bus;
  log: Logger;
  /** Probe interval of the databases (default 2 s). */
  intervalMs?: number;
  /** A probe that has not answered after this long counts as down (default 1.5 s). */
  probeTimeoutMs?: number;
  /** Called whenever a dependency changes status. */
  onChange(): void;
}

/** Running watch: the current status of every dependency. */
export interface DependencyWatch {
  /** Status per health service name. */
  statuses(): Record<string, ServingStatus>;
  /** True when every dependency is reachable. */
  allServing(): boolean;
  /** Stops probing. */
  stop(): void;
}

/** Starts watching the databases and the NATS connection. */
export function watchDependencies(opts: DependencyWatchOptions): DependencyWatch {
  const interval = opts.intervalMs ?? 2000;
  const probeTimeout = opts.probeTimeoutMs ?? 1500;
  const status = new Map<string, ServingStatus>();
  for (const schema of opts.databases.keys()) status.set(`mesh.dependency.postgres.${schema}`, "SERVING");
  status.set("mesh.dependency.nats", "SERVING");
  let stopped = false;
  const set = (name: string, next: ServingStatus, detail: string): void => {
    if (stopped || status.get(name) === next) return;
    status.set(name, next);
    if (next === "SERVING") opts.log.info("dependency reachable again", { dependency: name });
    else opts.log.warn("dependency unreachable", { dependency: name, detail });
    opts.onChange();
  };

  const probe = async (schema: string, db: Database): Promise<void> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        db.fork().getConnection().execute("select 1"),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer in ${probeTimeout} ms`)), probeTimeout);
        }),
      ]);
      set(`mesh.dependency.postgres.${schema}`, "SERVING", "");
    } catch (err) {
      set(`mesh.dependency.postgres.${schema}`, "NOT_SERVING", err instanceof Error ? err.message : String(err));
    } finally {
      clearTimeout(timer);
    }
  };
  let probing = false;
  const timer = setInterval(() => {
    if (probing) return;
    probing = true;
    void Promise.all([...opts.databases].map(([schema, db]) => probe(schema, db))).finally(() => {
      probing = false;
    });
  }, interval);
  timer.unref();

  void (async () => {
    for await (const s of opts.bus.nc.status()) {
      if (s.type === "disconnect") set("mesh.dependency.nats", "NOT_SERVING", "disconnected");
      else if (s.type === "reconnect") set("mesh.dependency.nats", "SERVING", "");
      else if (s.type === "close") break;
    }
  })().catch(() => undefined);

  return {
    statuses: () => Object.fromEntries(status),
    allServing: () => [...status.values()].every((s) => s === "SERVING"),
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
