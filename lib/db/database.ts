/**
 * PostgreSQL through MikroORM: one schema per server (content / operations / technical), each
 * composed of the framework's tables and the tables of the modules whose domain it is (their
 * committed migrations, applied at start under an advisory lock, in name = time order), one
 * EntityManager fork per request or message, and transactions that carry outbox messages.
 */
import { createHash } from "node:crypto";
import type { MigrationObject } from "@mikro-orm/core";
import { Migrator } from "@mikro-orm/migrations";
import { type EntityManager, type EntitySchema, MikroORM } from "@mikro-orm/postgresql";
import pg from "pg";
import type { Logger } from "../log/index.ts";
import { frameworkEntities } from "./entities.ts";
import { frameworkMigrations } from "./framework-migration.ts";

export type { EntityManager } from "@mikro-orm/postgresql";

/** A schema a server owns: its entities and the migrations that create them. */
export interface DataDomain {
  /** PostgreSQL schema name (the owning server's name). */
  readonly schema: string;
  /** The domain's own entities (the framework's outbox, inbox and idempotency tables are added). */
  readonly entities: readonly EntitySchema[];
  /** Committed migrations, oldest first. */
  readonly migrations: readonly MigrationObject[];
}

/** An open database for one domain. */
export interface Database {
  /** The ORM instance. */
  readonly orm: MikroORM;
  /** Schema name. */
  readonly schema: string;
  /** A fresh EntityManager (one per request or message). */
  fork(): EntityManager;
  /**
   * Runs `fn` in a transaction on a fresh fork and commits (or rolls back when it throws). Outbox
   * messages added inside commit with the change; commit listeners run after a commit that added some.
   */
  transaction<T>(fn: (em: EntityManager) => Promise<T>): Promise<T>;
  /** Marks `em`'s transaction as carrying outbox messages (called by the outbox). */
  markOutbox(em: EntityManager): void;
  /** Registers a listener for commits that carried outbox messages (the relay's wake-up). */
  onOutboxCommit(listener: () => void): () => void;
  /** Closes the pool. */
  close(): Promise<void>;
}

/** Options of {@link openDatabase}. */
export interface OpenDatabaseOptions {
  /** `postgres://…` URL of the database. */
  url: string;
  /** Schema, entities and migrations. */
  domain: DataDomain;
  /** Logger. */
  log: Logger;
  /** Apply pending migrations (default true). */
  migrate?: boolean;
  /** Largest number of pooled connections (default 10). */
  poolMax?: number;
}

/** Tables a module contributes to a schema. */
export interface TableContribution {
  /** Entities. */
  readonly entities: readonly EntitySchema[];
  /** Migrations, named `Migration<yyyymmddhhmmss>_<name>`. */
  readonly migrations: readonly MigrationObject[];
}

/**
 * The domain of `schema`: the framework migrations, then every contribution's entities and
 * migrations, migrations in name order (their names start with the time they were generated, so
 * migrations of different modules apply in the order they were written). Duplicate names fail.
 */
export function composeDomain(schema: string, contributions: readonly TableContribution[]): DataDomain {
  const migrations = [...frameworkMigrations(schema), ...contributions.flatMap((c) => c.migrations)];
  const names = new Set<string>();
  for (const m of migrations) {
    if (names.has(m.name)) throw new Error(`schema ${schema}: migration ${m.name} is declared twice`);
    names.add(m.name);
  }
  return {
    schema,
    entities: contributions.flatMap((c) => c.entities),
    migrations: migrations.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
  };
}

/** Entities of a domain, framework tables included. */
export function entitiesOf(domain: DataDomain): EntitySchema[] {
  return [...frameworkEntities, ...domain.entities] as EntitySchema[];
}

/** MikroORM options for a domain (shared by the server and the migration generator). */
export function ormOptions(url: string, domain: DataDomain, poolMax = 10) {
  return {
    clientUrl: url,
    schema: domain.schema,
    entities: entitiesOf(domain),
    extensions: [Migrator],
    pool: { min: 0, max: poolMax },
    migrations: {
      tableName: "mikro_orm_migrations",
      migrationsList: [...domain.migrations],
      snapshot: false,
      silent: true,
      schema: domain.schema,
    },
    // Entities are plain objects defined with defineEntity; no reflection or discovery of files.
    discovery: { warnWhenNoEntities: true },
    ensureDatabase: false,
    allowGlobalContext: false,
  };
}

/** A 64-bit advisory-lock key derived from a name. */
function lockKey(name: string): string {
  return BigInt.asIntN(64, BigInt(`0x${createHash("sha256").update(name).digest("hex").slice(0, 16)}`)).toString();
}

/**
 * Applies the domain's pending migrations. An advisory lock on a dedicated connection serialises
 * replicas starting together; each migration runs in a transaction.
 */
async function migrate(orm: MikroORM, url: string, schema: string, log: Logger): Promise<void> {
  const lock = new pg.Client({ connectionString: url });
  await lock.connect();
  const key = lockKey(`mesh.migrate.${schema}`);
  try {
    await lock.query("select pg_advisory_lock($1::bigint)", [key]);
    await lock.query(`create schema if not exists "${schema}"`);
    const applied = await orm.migrator.up();
    if (applied.length > 0) log.info("migrated", { schema, applied: applied.map((m) => m.name).join(",") });
  } finally {
    await lock.query("select pg_advisory_unlock($1::bigint)", [key]).catch(() => undefined);
    await lock.end();
  }
}

/** Opens the database of `domain`, applying pending migrations first. */
export async function openDatabase(opts: OpenDatabaseOptions): Promise<Database> {
  const { domain, log } = opts;
  const orm = await MikroORM.init(ormOptions(opts.url, domain, opts.poolMax));
  if (opts.migrate !== false) await migrate(orm, opts.url, domain.schema, log);
  const withOutbox = new WeakSet<EntityManager>();
  const listeners = new Set<() => void>();
  return {
    orm,
    schema: domain.schema,
    fork: () => orm.em.fork() as EntityManager,
    async transaction(fn) {
      const em = orm.em.fork() as EntityManager;
      let carried = false;
      const result = await em.transactional(async (tem) => {
        const out = await fn(tem);
        carried = withOutbox.has(tem);
        return out;
      });
      if (carried) for (const l of listeners) l();
      return result;
    },
    markOutbox(em) {
      withOutbox.add(em);
    },
    onOutboxCommit(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close: () => orm.close(),
  };
}

/** Creates a database named `name` on the server at `adminUrl` (a URL of any database there). */
export async function createDatabase(adminUrl: string, name: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`invalid database name ${name}`);
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`create database "${name}"`);
  } finally {
    await client.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Drops the database named `name` on the server at `adminUrl`, closing its connections. */
export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`drop database if exists "${name}" with (force)`);
  } finally {
    await client.end();
  }
}
