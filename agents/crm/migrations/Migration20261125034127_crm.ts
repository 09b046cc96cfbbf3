import { Migration } from "@mikro-orm/migrations";

export class Migration20261125034127_crm extends Migration {
  override name = "Migration20261125034127_crm";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "operations"."crm_contact" ("id" uuid not null, "email" varchar(254) null, "given_name" varchar(100) not null default '', "family_name" varchar(100) not null default '', "phone" varchar(16) not null default '', "company" varchar(200) not null default '', "title" varchar(200) not null default '', "address" jsonb null, "city" varchar(200) not null default '', "region" varchar(100) not null default '', "source" varchar(64) not null default '', "lifecycle_stage" int not null default 0, "attributes" jsonb not null, "merged_into_id" uuid null, "created_at" timestamptz not null, "updated_at" timestamptz not null, "version" int not null default 1, primary key ("id"));`,
    );
    this.addSql(`alter table "operations"."crm_contact" add constraint "crm_contact_email_unique" unique ("email");`);
    this.addSql(`create index "crm_contact_merged_into_id_index" on "operations"."crm_contact" ("merged_into_id");`);

    this.addSql(
      `create table "operations"."crm_identity_set" ("id" uuid not null, "contact_id" uuid null, "size" int not null, "created_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(
      `alter table "operations"."crm_identity_set" add constraint "crm_identity_set_contact_id_unique" unique ("contact_id");`,
    );

    this.addSql(
      `create table "operations"."crm_identity_node" ("kind" varchar(16) not null, "value" varchar(254) not null, "set_id" uuid not null, "created_at" timestamptz not null, primary key ("kind", "value"));`,
    );
    this.addSql(`create index "crm_identity_node_set_id_index" on "operations"."crm_identity_node" ("set_id");`);

    this.addSql(
      `create table "operations"."crm_interaction" ("id" uuid not null, "event_id" varchar(128) not null, "anonymous_id" varchar(128) null, "email" varchar(254) null, "contact_id" uuid null, "type" int not null, "channel" int not null default 0, "url" varchar(2048) not null default '', "referrer_url" varchar(2048) not null default '', "campaign" varchar(200) not null default '', "city" varchar(200) not null default '', "region" varchar(100) not null default '', "latitude" double precision null, "longitude" double precision null, "occurred_at" timestamptz not null, "properties" jsonb not null, "recorded_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(
      `alter table "operations"."crm_interaction" add constraint "crm_interaction_event_id_unique" unique ("event_id");`,
    );
    this.addSql(
      `create index "crm_interaction_anonymous_id_index" on "operations"."crm_interaction" ("anonymous_id");`,
    );
    this.addSql(`create index "crm_interaction_email_index" on "operations"."crm_interaction" ("email");`);
    this.addSql(`create index "crm_interaction_contact_id_index" on "operations"."crm_interaction" ("contact_id");`);
    this.addSql(`create index "crm_interaction_occurred_at_index" on "operations"."crm_interaction" ("occurred_at");`);

    this.addSql(
      `alter table "operations"."crm_contact" add constraint "crm_contact_merged_into_id_foreign" foreign key ("merged_into_id") references "operations"."crm_contact" ("id") on delete set null;`,
    );

    this.addSql(
      `alter table "operations"."crm_identity_set" add constraint "crm_identity_set_contact_id_foreign" foreign key ("contact_id") references "operations"."crm_contact" ("id") on delete set null;`,
    );

    this.addSql(
      `alter table "operations"."crm_identity_node" add constraint "crm_identity_node_set_id_foreign" foreign key ("set_id") references "operations"."crm_identity_set" ("id");`,
    );

    this.addSql(
      `alter table "operations"."crm_interaction" add constraint "crm_interaction_contact_id_foreign" foreign key ("contact_id") references "operations"."crm_contact" ("id") on delete set null;`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "operations"."crm_contact" drop constraint "crm_contact_merged_into_id_foreign";`);
    this.addSql(`alter table "operations"."crm_identity_set" drop constraint "crm_identity_set_contact_id_foreign";`);
    this.addSql(`alter table "operations"."crm_interaction" drop constraint "crm_interaction_contact_id_foreign";`);
    this.addSql(`alter table "operations"."crm_identity_node" drop constraint "crm_identity_node_set_id_foreign";`);

    this.addSql(`drop table if exists "operations"."crm_contact" cascade;`);
    this.addSql(`drop table if exists "operations"."crm_identity_set" cascade;`);
    this.addSql(`drop table if exists "operations"."crm_identity_node" cascade;`);
    this.addSql(`drop table if exists "operations"."crm_interaction" cascade;`);
  }
}
