/**
 * The framework's tables in every server schema (outbox, inbox, idempotency records), created by the
 * first migration of each schema. Idempotent: schemas created before the framework had a migration
 * of its own already hold these tables (in their first migration, under another name). Tables the
 * framework gained later (model usage) come in migrations of their own, so existing schemas get them.
 */
import type { MigrationObject } from "@mikro-orm/core";
import { Migration } from "@mikro-orm/migrations";

/** `alter table … add constraint …` that does nothing when the constraint exists (PostgreSQL has no IF NOT EXISTS for it). */
export function addConstraintOnce(table: string, name: string, definition: string): string {
  return `do $$ begin if not exists (select 1 from pg_constraint where conname = '${name}' and conrelid = '${table}'::regclass) then alter table ${table} add constraint "${name}" ${definition}; end if; end $$;`;
}

/** Name of the framework migration; it sorts before every module's migration. */
export const FRAMEWORK_MIGRATION = "Migration20261125000000_framework";

/** The framework migration of `schema`. */
export function frameworkMigration(schema: string): MigrationObject {
  const q = `"${schema}"`;
  class FrameworkTables extends Migration {
    override name = FRAMEWORK_MIGRATION;

    override up(): void {
      this.addSql(`create schema if not exists ${q};`);
      this.addSql(
        `create table if not exists ${q}."idempotency_record" ("id" varchar(400) not null, "procedure" varchar(255) not null, "request_hash" varchar(64) not null, "response" bytea not null, "replays" int not null default 0, "created_at" timestamptz not null, primary key ("id"));`,
      );
      this.addSql(
        `create table if not exists ${q}."inbox" ("consumer" varchar(200) not null, "msg_id" varchar(200) not null, "subject" varchar(255) not null, "processed_at" timestamptz not null, primary key ("consumer", "msg_id"));`,
      );
      this.addSql(
        `create table if not exists ${q}."outbox" ("id" bigserial primary key, "subject" varchar(255) not null, "msg_id" varchar(200) not null, "payload" bytea not null, "headers" jsonb not null, "created_at" timestamptz not null);`,
      );
      this.addSql(addConstraintOnce(`${q}."outbox"`, "outbox_msg_id_unique", `unique ("msg_id")`));
    }

    override down(): void {
      this.addSql(`drop table if exists ${q}."idempotency_record" cascade;`);
      this.addSql(`drop table if exists ${q}."inbox" cascade;`);
      this.addSql(`drop table if exists ${q}."outbox" cascade;`);
    }
  }
  return { name: FRAMEWORK_MIGRATION, class: FrameworkTables };
}

/** Name of the framework migration that adds the model provider's usage table. */
export const MODEL_USAGE_MIGRATION = "Migration20261203195313_framework_model_usage";

/** The migration of `schema` that adds `model_usage` (lib/model's record of tokens and cost per call). */
export function modelUsageMigration(schema: string): MigrationObject {
  const q = `"${schema}"`;
  class ModelUsageTable extends Migration {
    override name = MODEL_USAGE_MIGRATION;

    override up(): void {
      this.addSql(
        `create table if not exists ${q}."model_usage" ("id" bigserial primary key, "skill" varchar(255) not null, "run_id" varchar(100) not null, "provider" varchar(32) not null, "model" varchar(255) not null, "prompt_tokens" int not null, "completion_tokens" int not null, "cost" double precision not null, "estimated" boolean not null, "created_at" timestamptz not null);`,
      );
      this.addSql(
        `create index if not exists "model_usage_run_id_created_at_index" on ${q}."model_usage" ("run_id", "created_at");`,
      );
      this.addSql(`create index if not exists "model_usage_created_at_index" on ${q}."model_usage" ("created_at");`);
    }

    override down(): void {
      this.addSql(`drop table if exists ${q}."model_usage" cascade;`);
    }
  }
  return { name: MODEL_USAGE_MIGRATION, class: ModelUsageTable };
}

/** Every framework migration of `schema`, oldest first. */
export function frameworkMigrations(schema: string): MigrationObject[] {
  return [frameworkMigration(schema), modelUsageMigration(schema)];
}
