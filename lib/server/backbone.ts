/**
 * What a server opens besides its port: the databases of the domains its agents own, the NATS bus,
 * and one outbox relay per database.
 */
import { type Bus, connectBus, type Running } from "../bus/index.ts";
import { startOutboxRelay } from "../bus/outbox.ts";
import { defaultPlacement, type MeshConfig, type ServerName } from "../config/index.ts";
import { domains } from "../db/domains.ts";
import { type Database, openDatabase } from "../db/index.ts";
import type { Logger } from "../log/index.ts";

/** Open databases and bus. */
export interface Backbone {
  bus: Bus;
  /** Database of each domain the server's agents own. */
  databases: Map<ServerName, Database>;
  /** The database of an agent's domain. */
  databaseOf(agentId: string): Database;
  /** Stops relays, closes the bus and the pools. */
  close(): Promise<void>;
}

/** The domain (owning server schema) of an agent, wherever it runs. */
export function domainOf(agentId: string): ServerName {
  const d = defaultPlacement[agentId];
  if (d === undefined) throw new Error(`unknown agent ${agentId}`);
  return d;
}

/** Opens databases (migrating them) and the bus for the given agents. */
export async function openBackbone(opts: {
  config: MeshConfig;
  server: string;
  agents: readonly string[];
  log: Logger;
}): Promise<Backbone> {
  const { config, log } = opts;
  if (config.databaseUrl === undefined || config.natsUrl === undefined) {
    throw new Error("DATABASE_URL and NATS_URL must be resolved before a server starts (see lib/infra)");
  }
  const needed = [...new Set(opts.agents.map(domainOf))].sort();
  const databases = new Map<ServerName, Database>();
  const relays: Running[] = [];
  let bus: Bus | undefined;
  try {
    bus = await connectBus({ url: config.natsUrl, prefix: config.natsPrefix, name: opts.server, log });
    for (const d of needed) {
      const db = await openDatabase({ url: config.databaseUrl, domain: domains[d], log });
      databases.set(d, db);
      relays.push(startOutboxRelay(db, bus, { log }));
    }
  } catch (err) {
    for (const db of databases.values()) await db.close().catch(() => undefined);
    await bus?.close();
    throw err;
  }
  const b = bus;
  return {
    bus: b,
    databases,
    databaseOf(agentId) {
      const db = databases.get(domainOf(agentId));
      if (db === undefined) throw new Error(`no database open for agent ${agentId}`);
      return db;
    },
    async close() {
      for (const r of relays) await r.stop();
      await b.close();
      for (const db of databases.values()) await db.close();
    },
  };
}
