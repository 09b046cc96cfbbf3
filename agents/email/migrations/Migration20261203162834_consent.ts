import { Migration } from "@mikro-orm/migrations";

export class Migration20261203162834_consent extends Migration {
  override name = "Migration20261203162834_consent";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "operations"."email_do_not_contact" ("address_sha256" varchar(64) not null, "blocked" boolean not null, "reason" varchar(200) not null, "changed_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("address_sha256"));`,
    );
    this.addSql(
      `create table "operations"."email_suppression_marker" ("address_sha256" varchar(64) not null, "reason" varchar(200) not null, "created_at" timestamptz not null, primary key ("address_sha256"));`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "operations"."email_suppression_marker" cascade;`);
    this.addSql(`drop table if exists "operations"."email_do_not_contact" cascade;`);
  }
}
