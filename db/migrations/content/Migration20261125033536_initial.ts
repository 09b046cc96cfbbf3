import { Migration } from "@mikro-orm/migrations";

export class Migration20261125033536_initial extends Migration {
  override name = "Migration20261125033536_initial";

  override up(): void | Promise<void> {
    this.addSql(`create schema if not exists "content";`);
    this.addSql(
      `create table "content"."idempotency_record" ("id" varchar(400) not null, "procedure" varchar(255) not null, "request_hash" varchar(64) not null, "response" bytea not null, "replays" int not null default 0, "created_at" timestamptz not null, primary key ("id"));`,
    );

    this.addSql(
      `create table "content"."inbox" ("consumer" varchar(200) not null, "msg_id" varchar(200) not null, "subject" varchar(255) not null, "processed_at" timestamptz not null, primary key ("consumer", "msg_id"));`,
    );

    this.addSql(
      `create table "content"."outbox" ("id" bigserial primary key, "subject" varchar(255) not null, "msg_id" varchar(200) not null, "payload" bytea not null, "headers" jsonb not null, "created_at" timestamptz not null);`,
    );
    this.addSql(`alter table "content"."outbox" add constraint "outbox_msg_id_unique" unique ("msg_id");`);
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "content"."idempotency_record" cascade;`);
    this.addSql(`drop table if exists "content"."inbox" cascade;`);
    this.addSql(`drop table if exists "content"."outbox" cascade;`);

    this.addSql(`drop schema if exists "content";`);
  }
}
