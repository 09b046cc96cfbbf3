import { Migration } from "@mikro-orm/migrations";

export class Migration20261203133656_outreach_send extends Migration {
  override name = "Migration20261203133656_outreach_send";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "technical"."seo_outreach_send" ("request_id" uuid not null, "domain" varchar(253) not null, "email_request_id" uuid not null, "state" varchar(12) not null, "email_request" bytea not null, "attempt" int not null, "message_id" varchar(255) not null default '', "note" text not null default '', "claimed_at" timestamptz not null, "finished_at" timestamptz null, primary key ("request_id", "domain"));`,
    );
    this.addSql(
      `create unique index "seo_outreach_send_unconfirmed_domain_unique" on "technical"."seo_outreach_send" ("domain") where state in ('sending', 'unknown');`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "technical"."seo_outreach_send" cascade;`);
  }
}
