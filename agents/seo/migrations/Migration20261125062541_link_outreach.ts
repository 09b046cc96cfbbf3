import { Migration } from "@mikro-orm/migrations";

export class Migration20261125062541_link_outreach extends Migration {
  override name = "Migration20261125062541_link_outreach";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "technical"."seo_outreach_prospect" ("domain" varchar(253) not null, "state" int not null, "url" varchar(2048) not null default '', "contact_email" varchar(254) not null default '', "contact_name" varchar(200) not null default '', "authority" double precision not null default 0, "topic_similarity" double precision not null default 0, "score" double precision not null default 0, "target_url" varchar(2048) not null default '', "contact_attempts" int not null default 0, "last_contacted_at" timestamptz null, "last_message_id" varchar(255) not null default '', "won_link_url" varchar(2048) not null default '', "created_at" timestamptz not null, "updated_at" timestamptz not null, "version" int not null default 1, primary key ("domain"));`,
    );
    this.addSql(`create index "seo_outreach_prospect_state_index" on "technical"."seo_outreach_prospect" ("state");`);

    this.addSql(
      `create table "technical"."seo_outreach_event" ("id" uuid not null, "domain" varchar(253) not null, "kind" varchar(20) not null, "from_state" int not null, "to_state" int not null, "note" text not null default '', "link_url" varchar(2048) not null default '', "message_id" varchar(255) not null default '', "request_id" uuid not null, "occurred_at" timestamptz not null, "recorded_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(`create index "seo_outreach_event_domain_index" on "technical"."seo_outreach_event" ("domain");`);

    this.addSql(
      `alter table "technical"."seo_outreach_event" add constraint "seo_outreach_event_domain_foreign" foreign key ("domain") references "technical"."seo_outreach_prospect" ("domain");`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "technical"."seo_outreach_event" drop constraint "seo_outreach_event_domain_foreign";`);

    this.addSql(`drop table if exists "technical"."seo_outreach_prospect" cascade;`);
    this.addSql(`drop table if exists "technical"."seo_outreach_event" cascade;`);
  }
}
