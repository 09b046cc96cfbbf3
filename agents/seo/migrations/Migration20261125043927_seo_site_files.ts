import { Migration } from "@mikro-orm/migrations";

export class Migration20261125043927_seo_site_files extends Migration {
  override name = "Migration20261125043927_seo_site_files";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "technical"."seo_site_file" ("origin" varchar(255) not null, "path" varchar(2048) not null, "content" text not null, "sha256" varchar(64) not null, "updated_at" timestamptz not null, "version" int not null default 1, primary key ("origin", "path"));`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "technical"."seo_site_file" cascade;`);
  }
}
