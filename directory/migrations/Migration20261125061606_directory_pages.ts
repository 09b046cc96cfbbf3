import { Migration } from "@mikro-orm/migrations";

export class Migration20261125061606_directory_pages extends Migration {
  override name = "Migration20261125061606_directory_pages";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "technical"."directory_page" ("path" varchar(300) not null, "kind" varchar(16) not null, "input_hash" varchar(64) not null, "content_hash" varchar(64) not null, "bytes" int not null, "modified_at" timestamptz not null, "rendered_at" timestamptz not null, primary key ("path"));`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "technical"."directory_page" cascade;`);
  }
}
