/**
 * What a server opens besides its port: the databases of the domains its modules own, the NATS bus,
 * and one outbox relay per database. A domain is the schema of the server that owns an agent's data
 * (the agent's `default_server` option in the proto), wherever the agent runs; its tables are those
 * of every module of the build whose domain it is, so any server opening it applies the same migrations.
 */
import { type Bus, connectBus, type Running, startOutboxRelay } from "../bus/index.ts";
import { type MeshConfig, type ServerName, serverNames } from "../config/index.ts";
import { composeDomain, type Database, type DataDomain, openDatabase } from "../db/index.ts";
import type { Logger } from "../log/index.ts";
import type { Catalog } from "../registry/index.ts";
import type { MeshModule } from "./agent.ts";

/** Open databases and bus. */
export interface Backbone {
  bus: Bus;
  /** Database of each domain the server's modules own. */
  databases: Map<ServerName, Database>;
  /** The database of the domain of an agent (or of a module placed with it). */
  databaseOf(agentId: string): Database;
  /** Stops relays, closes the bus and the pools. */
  close(): Promise<void>;
}

/** The domain (owning server schema) of an agent, wherever it runs: its proto `default_server`. */
export function domainOf(catalog: Catalog, agentId: string): ServerName {
  const server = catalog.agentById.get(agentId)?.defaultServer;
  if (server === undefined || !(serverNames as readonly string[]).includes(server)) {
    throw new Error(`unknown agent ${agentId}`);
  }
  return server as ServerName;
}

/** Every schema of the build, composed from the modules whose domain it is. */
export function composeDomains(modules: readonly MeshModule[], catalog: Catalog): Record<ServerName, DataDomain> {
  const out = {} as Record<ServerName, DataDomain>;
  for (const schema of serverNames) {
    const contributions = modules
      .filter((m) => m.data !== undefined && domainOf(catalog, m.placedWith) === schema)
      .map((m) => m.data as NonNullable<MeshModule["data"]>);
    out[schema] = composeDomain(schema, contributions);
  }
  return out;
}

/** Opens databases (migrating them) and the bus for the modules placed with `agents`. */
export async function openBackbone(opts: {
  config: MeshConfig;
  server: string;
  /** Agents hosted here: their domains are opened. */
  agents: readonly string[];
  /** Every module of the build (a schema holds the tables of all modules whose domain it is). */
  modules: readonly MeshModule[];
  catalog: Catalog;
  log: Logger;
}): Promise<Backbone> {
  const { config, log, catalog } = opts;
  if (config.databaseUrl === undefined || config.natsUrl === undefined) {
    throw new Error("DATABASE_URL and NATS_URL must be resolved before a server starts (see lib/infra)");
  }
  const domains = composeDomains(opts.modules, catalog);
  const needed = [...new Set(opts.agents.map((a) => domainOf(catalog, a)))].sort();
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
      const db = databases.get(domainOf(catalog, agentId));
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
