import { Migration } from "@mikro-orm/migrations";

/** Follow-up sequences: cadences, enrolments, their scheduled sends, and the send-time model's arms. */
export class Migration20261203162527_follow_up_sequences extends Migration {
  override name = "Migration20261203162527_follow_up_sequences";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "operations"."email_follow_up_cadence" ("sequence_id" varchar(64) not null, "revision" int not null, "name" varchar(200) not null default '', "definition" jsonb not null, "stop_conditions" jsonb not null, "segment_key" varchar(128) not null default '', "market_region" varchar(16) not null default '', "market_city" varchar(100) not null default '', "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("sequence_id"));`,
    );
    this.addSql(
      `create index "email_follow_up_cadence_market_index" on "operations"."email_follow_up_cadence" ("segment_key", "market_region", "market_city");`,
    );
    this.addSql(
      `create table "operations"."email_follow_up_enrollment" ("id" uuid not null, "sequence_id" varchar(64) not null, "contact_id" varchar(128) not null, "address" varchar(254) not null, "recipient" varchar(254) not null, "name" varchar(200) not null default '', "fields" jsonb not null, "time_zone" varchar(64) not null, "segment_key" varchar(128) not null default '', "state" varchar(12) not null, "stop_reason" int not null default 0, "stop_detail" varchar(300) not null default '', "completed_steps" int not null default 0, "next_step" int not null default 0, "next_due_at" timestamptz null, "last_message_id" varchar(255) not null default '', "request_id" uuid null, "enrolled_at" timestamptz not null, "stopped_at" timestamptz null, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("id"));`,
    );
    // One active enrolment per (sequence, contact): concurrent enrolments of the same contact collide here.
    this.addSql(
      `create unique index "email_follow_up_enrollment_active_unique" on "operations"."email_follow_up_enrollment" ("sequence_id", "contact_id") where state = 'active';`,
    );
    this.addSql(
      `create index "email_follow_up_enrollment_contact_index" on "operations"."email_follow_up_enrollment" ("contact_id", "state");`,
    );
    this.addSql(
      `create index "email_follow_up_enrollment_sequence_index" on "operations"."email_follow_up_enrollment" ("sequence_id", "contact_id", "created_at");`,
    );
    this.addSql(
      `create table "operations"."email_follow_up_send" ("id" uuid not null, "enrollment_id" uuid not null, "step_index" int not null, "channel" int not null, "template_id" varchar(128) not null, "due_at" timestamptz not null, "status" varchar(12) not null, "request_id" uuid not null, "message_id" varchar(255) not null default '', "arm" smallint null, "segment_key" varchar(128) not null default '', "claim_token" uuid null, "claimed_at" timestamptz null, "claimed_by" varchar(100) not null default '', "attempts" int not null default 0, "error" text not null default '', "sent_at" timestamptz null, "opened_at" timestamptz null, "clicked_at" timestamptz null, "replied_at" timestamptz null, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(
      `alter table "operations"."email_follow_up_send" add constraint "email_follow_up_send_enrollment_step_unique" unique ("enrollment_id", "step_index");`,
    );
    this.addSql(
      `alter table "operations"."email_follow_up_send" add constraint "email_follow_up_send_request_id_unique" unique ("request_id");`,
    );
    this.addSql(
      `create index "email_follow_up_send_due_index" on "operations"."email_follow_up_send" ("status", "due_at");`,
    );
    this.addSql(
      `create index "email_follow_up_send_message_id_index" on "operations"."email_follow_up_send" ("message_id");`,
    );
    this.addSql(
      `create table "operations"."email_send_time_arm" ("segment_key" varchar(160) not null, "arm" smallint not null, "trials" bigint not null default 0, "successes" bigint not null default 0, "updated_at" timestamptz not null, primary key ("segment_key", "arm"));`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "operations"."email_follow_up_cadence" cascade;`);
    this.addSql(`drop table if exists "operations"."email_follow_up_enrollment" cascade;`);
    this.addSql(`drop table if exists "operations"."email_follow_up_send" cascade;`);
    this.addSql(`drop table if exists "operations"."email_send_time_arm" cascade;`);
  }
}
