import { Migration } from "@mikro-orm/migrations";

export class Migration20261203142810_newsletters extends Migration {
  override name = "Migration20261203142810_newsletters";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "operations"."email_newsletter" ("campaign_id" varchar(64) not null, "request_id" uuid not null, "revision" int not null, "title" varchar(200) not null, "segment_id" varchar(128) not null, "sender_name" varchar(100) not null, "sender_address" varchar(254) not null, "reply_to" varchar(254) not null default '', "variants" jsonb not null, "preheader" varchar(200) not null default '', "mjml" text not null, "html" text not null, "plain_text" text not null, "unsubscribe_url" varchar(2048) not null, "unsubscribe_mailto" varchar(254) not null default '', "response" bytea not null, "ab_metric" varchar(10) not null default 'click', "ab_state" varchar(10) not null, "ab_alpha" double precision not null default 0.05, "ab_test_size" bigint not null default '0', "ab_audience_size" bigint not null default '0', "ab_test_duration_ms" bigint not null default '0', "ab_test_fraction" double precision null, "test_started_at" timestamptz null, "test_ends_at" timestamptz null, "winner_variant_id" varchar(8) not null default '', "decision" jsonb null, "decided_at" timestamptz null, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("campaign_id"));`,
    );
    this.addSql(
      `alter table "operations"."email_newsletter" add constraint "email_newsletter_request_id_unique" unique ("request_id");`,
    );

    this.addSql(
      `create table "operations"."email_newsletter_send" ("id" uuid not null, "campaign_id" varchar(64) not null, "recipient" varchar(254) not null, "address" varchar(254) not null, "name" varchar(100) not null default '', "fields" jsonb not null, "variant_id" varchar(8) not null default '', "in_test" boolean not null default false, "status" varchar(12) not null, "message_id" varchar(255) not null default '', "claim_token" uuid null, "claimed_at" timestamptz null, "claimed_by" varchar(100) not null default '', "attempts" int not null default 0, "next_attempt_at" timestamptz not null, "smtp_response" text not null default '', "error" text not null default '', "sent_at" timestamptz null, "bounced_at" timestamptz null, "complained_at" timestamptz null, "unsubscribed_at" timestamptz null, "opened_at" timestamptz null, "clicked_at" timestamptz null, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(
      `create index "email_newsletter_send_message_id_index" on "operations"."email_newsletter_send" ("message_id");`,
    );
    this.addSql(
      `create index "email_newsletter_send_status_next_attempt_at_index" on "operations"."email_newsletter_send" ("status", "next_attempt_at");`,
    );
    this.addSql(
      `alter table "operations"."email_newsletter_send" add constraint "email_newsletter_send_campaign_id_recipient_unique" unique ("campaign_id", "recipient");`,
    );

    this.addSql(
      `create table "operations"."email_secret" ("name" varchar(64) not null, "value" bytea not null, "created_at" timestamptz not null, primary key ("name"));`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "operations"."email_newsletter" cascade;`);
    this.addSql(`drop table if exists "operations"."email_newsletter_send" cascade;`);
    this.addSql(`drop table if exists "operations"."email_secret" cascade;`);
  }
}
