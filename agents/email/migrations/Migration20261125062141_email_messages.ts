import { Migration } from "@mikro-orm/migrations";

export class Migration20261125062141_email_messages extends Migration {
  override name = "Migration20261125062141_email_messages";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "operations"."email_message" ("id" uuid not null, "request_id" uuid not null, "request_hash" varchar(64) not null, "message_id" varchar(255) not null, "from_address" varchar(254) not null, "recipient" varchar(254) not null, "subject" varchar(300) not null, "tag" varchar(64) not null default '', "status" varchar(20) not null, "transport" varchar(10) not null default '', "accepted" jsonb not null, "rejected" jsonb not null, "smtp_response" text not null default '', "outbox_file" varchar(255) not null default '', "suppression_reason" varchar(200) not null default '', "error" text not null default '', "attempts" int not null default 0, "created_at" timestamptz not null, "updated_at" timestamptz not null, "processed_at" timestamptz null, primary key ("id"));`,
    );
    this.addSql(
      `alter table "operations"."email_message" add constraint "email_message_request_id_unique" unique ("request_id");`,
    );
    this.addSql(`create index "email_message_message_id_index" on "operations"."email_message" ("message_id");`);
    this.addSql(`create index "email_message_recipient_index" on "operations"."email_message" ("recipient");`);
    this.addSql(`create index "email_message_tag_index" on "operations"."email_message" ("tag");`);

    this.addSql(
      `create table "operations"."email_suppression" ("address" varchar(254) not null, "reason" varchar(200) not null, "created_at" timestamptz not null, primary key ("address"));`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "operations"."email_message" cascade;`);
    this.addSql(`drop table if exists "operations"."email_suppression" cascade;`);
  }
}
