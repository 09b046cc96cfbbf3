/**
 * The transaction of the call being handled. The idempotency interceptor opens one around a skill
 * call that carries a key; the skill's own writes join it, so its effects and the stored result
 * commit together (an agent never applies the same step twice).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { Database, EntityManager } from "./database.ts";

interface Scope {
  db: Database;
  em: EntityManager;
}

const storage = new AsyncLocalStorage<Scope>();

/** Runs `fn` with `em` as the open transaction of `db` for code called inside. */
export function runInUnitOfWork<T>(db: Database, em: EntityManager, fn: () => Promise<T>): Promise<T> {
  return storage.run({ db, em }, fn);
}

/**
 * Runs `fn` outside any open transaction: a call handled in the same process as its caller (an
 * in-process transport) must not join the caller's unit of work, as it would not across a network.
 */
export function outsideUnitOfWork<T>(fn: () => T): T {
  return storage.exit(fn);
}

/**
 * Runs `fn` in the call's open transaction on `db` when there is one, else in a new transaction.
 * Skills write through this.
 */
export function transaction<T>(db: Database, fn: (em: EntityManager) => Promise<T>): Promise<T> {
  const scope = storage.getStore();
  if (scope !== undefined && scope.db === db) return fn(scope.em);
  return db.transaction(fn);
}
