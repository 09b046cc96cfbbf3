import { Migration } from "@mikro-orm/migrations";

export class Migration20261125043417_conversions extends Migration {
  override name = "Migration20261125043417_conversions";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "technical"."conversion_definition" ("id" bigserial primary key, "name" varchar(64) not null, "display_name" varchar(200) not null default '', "event_type" smallint not null, "url_pattern" varchar(2048) not null default '', "currency_code" varchar(3) not null default '', "value_amount" numeric(38,9) not null default '0', "use_event_value" boolean not null default false, "lookback_seconds" int not null, "counting" smallint not null, "disabled" boolean not null default false, "created_at" timestamptz not null, "updated_at" timestamptz not null, "version" int not null default 1);`,
    );
    this.addSql(
      `alter table "technical"."conversion_definition" add constraint "conversion_definition_name_unique" unique ("name");`,
    );

    this.addSql(
      `create table "technical"."conversion_event" ("id" uuid not null, "definition_id" bigint not null, "event_type" smallint not null, "event_id" varchar(128) not null, "transaction_id" varchar(128) not null default '', "dedup_key" varchar(300) not null, "anonymous_id" varchar(128) not null default '', "contact_id" varchar(128) not null default '', "occurred_at" timestamptz not null, "currency_code" varchar(3) not null default '', "value_amount" numeric(38,9) not null default '0', "page_url" varchar(2048) not null default '', "location_key" varchar(100) not null default '', "city" varchar(200) not null default '', "region" varchar(100) not null default '', "country_code" varchar(2) not null default '', "attributed_to" uuid null, "request_id" varchar(64) not null, "recorded_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(
      `create index "conversion_event_definition_occurred_at_index" on "technical"."conversion_event" ("definition_id", "occurred_at");`,
    );
    this.addSql(
      `create index "conversion_event_page_url_occurred_at_index" on "technical"."conversion_event" ("page_url", "occurred_at");`,
    );
    this.addSql(
      `create index "conversion_event_location_key_occurred_at_index" on "technical"."conversion_event" ("location_key", "occurred_at");`,
    );
    this.addSql(
      `create index "conversion_event_city_occurred_at_index" on "technical"."conversion_event" ("country_code", "region", "city", "occurred_at");`,
    );
    this.addSql(
      `create index "conversion_event_anonymous_id_occurred_at_index" on "technical"."conversion_event" ("anonymous_id", "occurred_at");`,
    );
    this.addSql(
      `create index "conversion_event_contact_id_occurred_at_index" on "technical"."conversion_event" ("contact_id", "occurred_at");`,
    );
    this.addSql(
      `create index "conversion_event_event_type_occurred_at_index" on "technical"."conversion_event" ("event_type", "occurred_at");`,
    );
    this.addSql(
      `alter table "technical"."conversion_event" add constraint "conversion_event_definition_dedup_key_unique" unique ("definition_id", "dedup_key");`,
    );
    this.addSql(
      `alter table "technical"."conversion_event" add constraint "conversion_event_definition_event_id_unique" unique ("definition_id", "event_id");`,
    );

    this.addSql(
      `alter table "technical"."conversion_event" add constraint "conversion_event_definition_id_foreign" foreign key ("definition_id") references "technical"."conversion_definition" ("id");`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "technical"."conversion_event" drop constraint "conversion_event_definition_id_foreign";`);

    this.addSql(`drop table if exists "technical"."conversion_definition" cascade;`);
    this.addSql(`drop table if exists "technical"."conversion_event" cascade;`);
  }
}
