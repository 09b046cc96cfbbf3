/**
 * The workflow engine's tables. Idempotent: databases created before the engine's tables had a
 * migration of their own already hold them (in the technical schema's first migration).
 */
import { Migration } from "@mikro-orm/migrations";
import { addConstraintOnce } from "../../db/index.ts";

export class Migration20261125033956_workflow extends Migration {
  override name = "Migration20261125033956_workflow";

  override up(): void | Promise<void> {
    this.addSql(
      `create table if not exists "technical"."workflow_run" ("id" uuid not null, "workflow" varchar(63) not null, "request_id" uuid not null, "request_hash" varchar(64) not null, "state" smallint not null, "priority" smallint not null, "input" bytea not null, "labels" jsonb not null, "error" text not null default '', "traceparent" varchar(64) not null, "cancelled" boolean not null default false, "generation" int not null default 0, "created_at" timestamptz not null, "updated_at" timestamptz not null, "finished_at" timestamptz null, "version" int not null default 1, primary key ("id"));`,
    );
    this.addSql(
      addConstraintOnce(`"technical"."workflow_run"`, "workflow_run_request_id_unique", `unique ("request_id")`),
    );
    this.addSql(`create index if not exists "workflow_run_state_index" on "technical"."workflow_run" ("state");`);
    this.addSql(
      `create index if not exists "workflow_run_workflow_created_at_index" on "technical"."workflow_run" ("workflow", "created_at");`,
    );
    this.addSql(
      `create index if not exists "workflow_run_created_at_id_index" on "technical"."workflow_run" ("created_at", "id");`,
    );

    this.addSql(
      `create table if not exists "technical"."workflow_step" ("id" uuid not null, "run_id" uuid not null, "name" varchar(64) not null, "position" smallint not null, "kind" smallint not null, "state" smallint not null, "attempt" int not null default 0, "max_attempts" int not null, "output" bytea null, "error" text not null default '', "started_at" timestamptz null, "finished_at" timestamptz null, "due_at" timestamptz null, "completed_seq" int null, "approval" jsonb null, "awaited_event" varchar(255) null, "version" int not null default 1, primary key ("id"));`,
    );
    this.addSql(
      `create index if not exists "workflow_step_state_due_at_index" on "technical"."workflow_step" ("state", "due_at");`,
    );
    this.addSql(
      `create index if not exists "workflow_step_awaited_event_state_index" on "technical"."workflow_step" ("awaited_event", "state");`,
    );
    this.addSql(
      addConstraintOnce(`"technical"."workflow_step"`, "workflow_step_run_id_name_unique", `unique ("run_id", "name")`),
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "technical"."workflow_run" cascade;`);
    this.addSql(`drop table if exists "technical"."workflow_step" cascade;`);
  }
}
