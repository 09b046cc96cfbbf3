import { Migration } from "@mikro-orm/migrations";

export class Migration20261203140535_social extends Migration {
  override name = "Migration20261203140535_social";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "operations"."social_calendar" ("calendar_id" varchar(64) not null, "name" varchar(200) not null, "time_zone" varchar(64) not null, "revision" int not null, "updated_at" timestamptz not null, primary key ("calendar_id"));`,
    );

    this.addSql(
      `create table "operations"."social_calendar_plan" ("id" uuid not null, "calendar_id" varchar(64) not null, "revision" int not null, "request_id" uuid not null, "request_hash" varchar(64) not null, "response" bytea not null, "created_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(
      `alter table "operations"."social_calendar_plan" add constraint "social_calendar_plan_request_id_unique" unique ("request_id");`,
    );
    this.addSql(
      `alter table "operations"."social_calendar_plan" add constraint "social_calendar_plan_calendar_id_revision_unique" unique ("calendar_id", "revision");`,
    );

    this.addSql(
      `create table "operations"."social_outbox_post" ("post_id" uuid not null, "post_key" varchar(120) not null, "channel_id" varchar(64) not null, "platform" varchar(20) not null, "body" text not null, "recorded_at" timestamptz not null, primary key ("post_id"));`,
    );
    this.addSql(
      `create index "social_outbox_post_channel_id_index" on "operations"."social_outbox_post" ("channel_id");`,
    );

    this.addSql(
      `create table "operations"."social_scheduled_post" ("id" uuid not null, "post_key" varchar(120) not null, "calendar_id" varchar(64) not null, "revision" int not null, "item_id" varchar(128) not null, "channel_id" varchar(64) not null, "platform" varchar(20) not null, "due_at" timestamptz not null, "text" text not null, "link_url" text not null default '', "hashtags" jsonb not null, "status" varchar(12) not null, "attempts" int not null default 0, "claim_token" uuid null, "claimed_at" timestamptz null, "claimed_by" varchar(64) not null default '', "adapter" varchar(20) not null default '', "external_id" varchar(255) not null default '', "error" text not null default '', "published_at" timestamptz null, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(
      `alter table "operations"."social_scheduled_post" add constraint "social_scheduled_post_post_key_unique" unique ("post_key");`,
    );
    this.addSql(
      `create index "social_scheduled_post_calendar_id_index" on "operations"."social_scheduled_post" ("calendar_id");`,
    );
    this.addSql(
      `create index "social_scheduled_post_status_due_at_index" on "operations"."social_scheduled_post" ("status", "due_at");`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "operations"."social_calendar" cascade;`);
    this.addSql(`drop table if exists "operations"."social_calendar_plan" cascade;`);
    this.addSql(`drop table if exists "operations"."social_outbox_post" cascade;`);
    this.addSql(`drop table if exists "operations"."social_scheduled_post" cascade;`);
  }
}
