import { Migration } from "@mikro-orm/migrations";

export class Migration20261125033956_initial extends Migration {
  override name = "Migration20261125033956_initial";

  override up(): void | Promise<void> {
    this.addSql(`create schema if not exists "technical";`);
    this.addSql(
      `create table "technical"."idempotency_record" ("id" varchar(400) not null, "procedure" varchar(255) not null, "request_hash" varchar(64) not null, "response" bytea not null, "replays" int not null default 0, "created_at" timestamptz not null, primary key ("id"));`,
    );

    this.addSql(
      `create table "technical"."inbox" ("consumer" varchar(200) not null, "msg_id" varchar(200) not null, "subject" varchar(255) not null, "processed_at" timestamptz not null, primary key ("consumer", "msg_id"));`,
    );

    this.addSql(
      `create table "technical"."outbox" ("id" bigserial primary key, "subject" varchar(255) not null, "msg_id" varchar(200) not null, "payload" bytea not null, "headers" jsonb not null, "created_at" timestamptz not null);`,
    );
    this.addSql(`alter table "technical"."outbox" add constraint "outbox_msg_id_unique" unique ("msg_id");`);

    this.addSql(
      `create table "technical"."workflow_run" ("id" uuid not null, "workflow" varchar(63) not null, "request_id" uuid not null, "request_hash" varchar(64) not null, "state" smallint not null, "priority" smallint not null, "input" bytea not null, "labels" jsonb not null, "error" text not null default '', "traceparent" varchar(64) not null, "cancelled" boolean not null default false, "generation" int not null default 0, "created_at" timestamptz not null, "updated_at" timestamptz not null, "finished_at" timestamptz null, "version" int not null default 1, primary key ("id"));`,
    );
    this.addSql(
      `alter table "technical"."workflow_run" add constraint "workflow_run_request_id_unique" unique ("request_id");`,
    );
    this.addSql(`create index "workflow_run_state_index" on "technical"."workflow_run" ("state");`);
    this.addSql(
      `create index "workflow_run_workflow_created_at_index" on "technical"."workflow_run" ("workflow", "created_at");`,
    );
    this.addSql(`create index "workflow_run_created_at_id_index" on "technical"."workflow_run" ("created_at", "id");`);

    this.addSql(
      `create table "technical"."workflow_step" ("id" uuid not null, "run_id" uuid not null, "name" varchar(64) not null, "position" smallint not null, "kind" smallint not null, "state" smallint not null, "attempt" int not null default 0, "max_attempts" int not null, "output" bytea null, "error" text not null default '', "started_at" timestamptz null, "finished_at" timestamptz null, "due_at" timestamptz null, "completed_seq" int null, "approval" jsonb null, "awaited_event" varchar(255) null, "version" int not null default 1, primary key ("id"));`,
    );
    this.addSql(`create index "workflow_step_state_due_at_index" on "technical"."workflow_step" ("state", "due_at");`);
    this.addSql(
      `create index "workflow_step_awaited_event_state_index" on "technical"."workflow_step" ("awaited_event", "state");`,
    );
    this.addSql(
      `alter table "technical"."workflow_step" add constraint "workflow_step_run_id_name_unique" unique ("run_id", "name");`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "technical"."idempotency_record" cascade;`);
    this.addSql(`drop table if exists "technical"."inbox" cascade;`);
    this.addSql(`drop table if exists "technical"."outbox" cascade;`);
    this.addSql(`drop table if exists "technical"."workflow_run" cascade;`);
    this.addSql(`drop table if exists "technical"."workflow_step" cascade;`);

    this.addSql(`drop schema if exists "technical";`);
  }
}
