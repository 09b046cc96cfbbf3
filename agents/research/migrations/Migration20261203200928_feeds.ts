import { Migration } from "@mikro-orm/migrations";

export class Migration20261203200928_feeds extends Migration {
  override name = "Migration20261203200928_feeds";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "content"."research_feed" ("feed_id" varchar(64) not null, "url" text not null, "title" text not null default '', "format" varchar(8) not null default '', "etag" text not null default '', "last_modified" varchar(100) not null default '', "last_fetched_at" timestamptz null, "last_status" int not null default 0, "last_error" text not null default '', "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("feed_id"));`,
    );

    this.addSql(
      `create table "content"."research_feed_item" ("item_id" varchar(64) not null, "feed_id" varchar(64) not null, "guid" text not null default '', "link" text not null default '', "title" text not null default '', "summary" text not null default '', "published_at" timestamptz not null, "dated" boolean not null, "first_seen_at" timestamptz not null, primary key ("item_id"));`,
    );
    this.addSql(
      `create index "research_feed_item_feed_id_published_at_index" on "content"."research_feed_item" ("feed_id", "published_at");`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "content"."research_feed" cascade;`);
    this.addSql(`drop table if exists "content"."research_feed_item" cascade;`);
  }
}
