/**
 * PostgreSQL through MikroORM: one schema per server composed from the framework's and the modules'
 * tables, migrations applied at start, one EntityManager fork per request or message, transactions
 * that carry outbox messages, and the unit of work of the call being handled.
 */
export {
  LockMode,
  OptimisticLockError,
  UniqueConstraintViolationException,
} from "@mikro-orm/postgresql";
export {
  composeDomain,
  createDatabase,
  type Database,
  type DataDomain,
  dropDatabase,
  type EntityManager,
  entitiesOf,
  type OpenDatabaseOptions,
  openDatabase,
  ormOptions,
  type TableContribution,
} from "./database.ts";
export { frameworkEntities, IdempotencyRecord, InboxMessage, ModelUsageRecord, OutboxMessage } from "./entities.ts";
export {
  addConstraintOnce,
  FRAMEWORK_MIGRATION,
  frameworkMigration,
  frameworkMigrations,
  MODEL_USAGE_MIGRATION,
} from "./framework-migration.ts";
export {
  decodePageToken,
  defaultPageSize,
  encodePageToken,
  type Keyset,
  maxPageSize,
  pageSizeOf,
} from "./page-token.ts";
export { type PollLoop, type PollLoopOptions, type PollRound, startPollLoop } from "./poll.ts";
export { outsideUnitOfWork, runInUnitOfWork, transaction } from "./unit-of-work.ts";
