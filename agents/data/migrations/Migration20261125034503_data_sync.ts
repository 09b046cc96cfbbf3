import { Migration } from "@mikro-orm/migrations";

export class Migration20261125034503_data_sync extends Migration {
  override name = "Migration20261125034503_data_sync";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "technical"."sync_conflict_audit" ("id" uuid not null, "collection" varchar(127) not null, "key" varchar(256) not null, "field" varchar(63) not null default '', "stored_value" jsonb null, "incoming_value" jsonb null, "base_value" jsonb null, "winner" varchar(8) not null, "winning_hlc" varchar(540) not null, "losing_hlc" varchar(540) not null, "reason" text not null, "request_id" varchar(64) not null, "created_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(
      `create index "sync_conflict_audit_collection_key_created_at_index" on "technical"."sync_conflict_audit" ("collection", "key", "created_at");`,
    );
    this.addSql(
      `create index "sync_conflict_audit_request_id_index" on "technical"."sync_conflict_audit" ("request_id");`,
    );

    this.addSql(
      `create table "technical"."synced_record" ("id" bigserial primary key, "collection" varchar(127) not null, "key" varchar(256) not null, "fields" jsonb not null, "hlc" varchar(540) not null, "hlc_wall_ms" bigint not null, "hlc_logical" int not null, "hlc_node" varchar(64) not null, "deleted" boolean not null default false, "updated_at" timestamptz not null, "version" int not null default 1);`,
    );
    this.addSql(
      `create index "synced_record_collection_hlc_index" on "technical"."synced_record" ("collection", "hlc");`,
    );
    this.addSql(
      `alter table "technical"."synced_record" add constraint "synced_record_collection_key_unique" unique ("collection", "key");`,
    );

    this.addSql(
      `create table "technical"."synced_record_history" ("id" bigserial primary key, "collection" varchar(127) not null, "key" varchar(256) not null, "hlc" varchar(540) not null, "fields" jsonb not null, "deleted" boolean not null default false, "request_id" varchar(64) not null, "created_at" timestamptz not null);`,
    );
    this.addSql(
      `alter table "technical"."synced_record_history" add constraint "synced_record_history_collection_key_hlc_unique" unique ("collection", "key", "hlc");`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "technical"."sync_conflict_audit" cascade;`);
    this.addSql(`drop table if exists "technical"."synced_record" cascade;`);
    this.addSql(`drop table if exists "technical"."synced_record_history" cascade;`);
  }
}
