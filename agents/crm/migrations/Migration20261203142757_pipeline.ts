import { Migration } from "@mikro-orm/migrations";

export class Migration20261203142757_pipeline extends Migration {
  override name = "Migration20261203142757_pipeline";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "operations"."crm_deal" ("id" uuid not null, "pipeline_id" varchar(64) not null, "name" varchar(200) not null default '', "contact_id" uuid not null, "stage" varchar(64) not null, "outcome" int not null, "currency_code" varchar(3) null, "amount_units" bigint null, "amount_nanos" int null, "expected_close" timestamptz null, "owner_email" varchar(254) not null default '', "source" varchar(64) not null default '', "attributes" jsonb not null, "created_at" timestamptz not null, "updated_at" timestamptz not null, "stage_entered_at" timestamptz not null, "closed_at" timestamptz null, "version" int not null default 1, primary key ("id"));`,
    );
    this.addSql(`create index "crm_deal_contact_id_index" on "operations"."crm_deal" ("contact_id");`);
    this.addSql(`create index "crm_deal_pipeline_id_stage_index" on "operations"."crm_deal" ("pipeline_id", "stage");`);

    this.addSql(
      `create table "operations"."crm_deal_stage_change" ("id" uuid not null, "deal_id" uuid not null, "contact_id" uuid not null, "pipeline_id" varchar(64) not null, "from_stage" varchar(64) not null, "to_stage" varchar(64) not null, "outcome" int not null, "changed_at" timestamptz not null, "deal_version" int not null, "request_id" uuid not null, "guards" jsonb not null, "triggers" jsonb not null, primary key ("id"));`,
    );
    this.addSql(
      `alter table "operations"."crm_deal_stage_change" add constraint "crm_deal_stage_change_request_id_unique" unique ("request_id");`,
    );
    this.addSql(
      `create index "crm_deal_stage_change_deal_id_changed_at_id_index" on "operations"."crm_deal_stage_change" ("deal_id", "changed_at", "id");`,
    );
    this.addSql(
      `create index "crm_deal_stage_change_contact_id_changed_at_id_index" on "operations"."crm_deal_stage_change" ("contact_id", "changed_at", "id");`,
    );

    this.addSql(
      `create table "operations"."crm_pipeline" ("id" varchar(64) not null, "definition" jsonb not null, "version" int not null, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("id"));`,
    );

    this.addSql(`create index "crm_contact_created_at_id_index" on "operations"."crm_contact" ("created_at", "id");`);
    this.addSql(
      `create index "crm_contact_email_prefix_index" on "operations"."crm_contact" (lower("email") text_pattern_ops);`,
    );
    this.addSql(
      `create index "crm_contact_given_name_prefix_index" on "operations"."crm_contact" (lower("given_name") text_pattern_ops);`,
    );
    this.addSql(
      `create index "crm_contact_family_name_prefix_index" on "operations"."crm_contact" (lower("family_name") text_pattern_ops);`,
    );

    this.addSql(
      `create index "crm_interaction_contact_id_occurred_at_id_index" on "operations"."crm_interaction" ("contact_id", "occurred_at", "id");`,
    );

    this.addSql(
      `alter table "operations"."crm_deal" add constraint "crm_deal_contact_id_foreign" foreign key ("contact_id") references "operations"."crm_contact" ("id");`,
    );

    this.addSql(
      `alter table "operations"."crm_deal_stage_change" add constraint "crm_deal_stage_change_deal_id_foreign" foreign key ("deal_id") references "operations"."crm_deal" ("id");`,
    );
    this.addSql(
      `alter table "operations"."crm_deal_stage_change" add constraint "crm_deal_stage_change_contact_id_foreign" foreign key ("contact_id") references "operations"."crm_contact" ("id");`,
    );

    // The stage history is append-only: refuse any UPDATE of its rows (declared on the entity).
    this.addSql(
      `create or replace function "operations"."crm_deal_stage_change_crm_deal_stage_change_no_update_fn"() returns trigger as $$ begin raise exception 'crm_deal_stage_change is append-only: rows are never updated'; end; $$ language plpgsql;`,
    );
    this.addSql(
      `create trigger "crm_deal_stage_change_no_update" BEFORE UPDATE on "operations"."crm_deal_stage_change" for each ROW execute function "operations"."crm_deal_stage_change_crm_deal_stage_change_no_update_fn"();`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop trigger if exists "crm_deal_stage_change_no_update" on "operations"."crm_deal_stage_change";`);
    this.addSql(`drop function if exists "operations"."crm_deal_stage_change_crm_deal_stage_change_no_update_fn"();`);
    this.addSql(
      `alter table "operations"."crm_deal_stage_change" drop constraint "crm_deal_stage_change_deal_id_foreign";`,
    );

    this.addSql(`drop table if exists "operations"."crm_deal" cascade;`);
    this.addSql(`drop table if exists "operations"."crm_deal_stage_change" cascade;`);
    this.addSql(`drop table if exists "operations"."crm_pipeline" cascade;`);

    this.addSql(`drop index "operations"."crm_contact_created_at_id_index";`);
    this.addSql(`drop index "operations"."crm_contact_email_prefix_index";`);
    this.addSql(`drop index "operations"."crm_contact_given_name_prefix_index";`);
    this.addSql(`drop index "operations"."crm_contact_family_name_prefix_index";`);

    this.addSql(`drop index "operations"."crm_interaction_contact_id_occurred_at_id_index";`);
  }
}
