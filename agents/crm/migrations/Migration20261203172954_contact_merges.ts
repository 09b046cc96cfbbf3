import { Migration } from "@mikro-orm/migrations";

export class Migration20261203172954_contact_merges extends Migration {
  override name = "Migration20261203172954_contact_merges";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "operations"."crm_contact_merge" ("id" uuid not null, "request_id" uuid not null, "survivor_id" uuid not null, "merged_ids" jsonb not null, "previous" jsonb not null, "moved_interaction_ids" jsonb not null, "moved_identities" jsonb not null, "method" varchar(32) not null, "match_probability" double precision not null, "merged_by" varchar(128) not null default '', "merged_at" timestamptz not null, "unmerge_request_id" uuid null, "unmerged_by" varchar(128) null, "unmerged_at" timestamptz null, primary key ("id"));`,
    );
    this.addSql(
      `alter table "operations"."crm_contact_merge" add constraint "crm_contact_merge_request_id_survivor_id_unique" unique ("request_id", "survivor_id");`,
    );
    this.addSql(
      `alter table "operations"."crm_contact_merge" add constraint "crm_contact_merge_unmerge_request_id_unique" unique ("unmerge_request_id");`,
    );
    this.addSql(
      `create index "crm_contact_merge_survivor_id_index" on "operations"."crm_contact_merge" ("survivor_id");`,
    );
    // Append-only: a merge's facts never change; only its unmerge is recorded, once.
    this.addSql(
      `create or replace function "operations"."crm_contact_merge_crm_contact_merge_append_only_fn"() returns trigger as $$ begin if old.unmerged_at is not null or new.id <> old.id or new.request_id <> old.request_id or new.survivor_id <> old.survivor_id or new.merged_ids <> old.merged_ids or new.previous <> old.previous or new.moved_interaction_ids <> old.moved_interaction_ids or new.moved_identities <> old.moved_identities or new.method <> old.method or new.match_probability <> old.match_probability or new.merged_by <> old.merged_by or new.merged_at <> old.merged_at then raise exception 'crm_contact_merge is append-only: only an unmerge is recorded, once'; end if; return new; end; $$ language plpgsql;`,
    );
    this.addSql(
      `create trigger "crm_contact_merge_append_only" BEFORE UPDATE on "operations"."crm_contact_merge" for each ROW execute function "operations"."crm_contact_merge_crm_contact_merge_append_only_fn"();`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "operations"."crm_contact_merge" cascade;`);
    this.addSql(`drop function if exists "operations"."crm_contact_merge_crm_contact_merge_append_only_fn"();`);
  }
}
