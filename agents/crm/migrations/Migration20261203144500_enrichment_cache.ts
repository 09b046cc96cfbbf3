import { Migration } from "@mikro-orm/migrations";

export class Migration20261203144500_enrichment_cache extends Migration {
  override name = "Migration20261203144500_enrichment_cache";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "operations"."crm_enrichment_cache" ("provider" varchar(64) not null, "input_key" varchar(64) not null, "email_key" varchar(64) null, "fields" jsonb not null, "fetched_at" timestamptz not null, "expires_at" timestamptz not null, primary key ("provider", "input_key"));`,
    );
    this.addSql(
      `create index "crm_enrichment_cache_email_key_index" on "operations"."crm_enrichment_cache" ("email_key");`,
    );
    this.addSql(
      `create index "crm_enrichment_cache_expires_at_index" on "operations"."crm_enrichment_cache" ("expires_at");`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "operations"."crm_enrichment_cache" cascade;`);
  }
}
