import { Migration } from "@mikro-orm/migrations";

export class Migration20261203162018_lead_scoring extends Migration {
  override name = "Migration20261203162018_lead_scoring";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "operations"."crm_scoring_model" ("id" varchar(64) not null, "model" jsonb not null, "market_weighting" jsonb null, "version" int not null, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(
      `create table "operations"."crm_scoring_market_weight" ("market" varchar(301) not null, "rule_id" varchar(64) not null, "engaged" int not null, "converted" int not null, "rate" double precision not null, "multiplier" double precision not null, "updated_at" timestamptz not null, primary key ("market", "rule_id"));`,
    );
    this.addSql(
      `create table "operations"."crm_scoring_conversion" ("conversion_id" varchar(64) not null, "contact_id" uuid not null, "conversion_name" varchar(128) not null default '', "occurred_at" timestamptz not null, "recorded_at" timestamptz not null, primary key ("conversion_id"));`,
    );
    this.addSql(
      `create index "crm_scoring_conversion_contact_id_index" on "operations"."crm_scoring_conversion" ("contact_id");`,
    );
    this.addSql(
      `alter table "operations"."crm_scoring_conversion" add constraint "crm_scoring_conversion_contact_id_foreign" foreign key ("contact_id") references "operations"."crm_contact" ("id") on delete cascade;`,
    );
    this.addSql(
      `create table "operations"."crm_lead_score" ("contact_id" uuid not null, "score" double precision not null, "fit_score" double precision not null, "behaviour_score" double precision not null, "grade" int not null, "market" varchar(301) not null default '', "model_version" int not null, "contributions" jsonb not null, "scored_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("contact_id"));`,
    );
    this.addSql(`create index "crm_lead_score_market_index" on "operations"."crm_lead_score" ("market");`);
    this.addSql(
      `create index "crm_lead_score_ranking_index" on "operations"."crm_lead_score" ("score" desc, "contact_id");`,
    );
    this.addSql(
      `alter table "operations"."crm_lead_score" add constraint "crm_lead_score_contact_id_foreign" foreign key ("contact_id") references "operations"."crm_contact" ("id") on delete cascade;`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "operations"."crm_lead_score" cascade;`);
    this.addSql(`drop table if exists "operations"."crm_scoring_conversion" cascade;`);
    this.addSql(`drop table if exists "operations"."crm_scoring_market_weight" cascade;`);
    this.addSql(`drop table if exists "operations"."crm_scoring_model" cascade;`);
  }
}
