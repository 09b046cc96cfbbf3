import { Migration } from "@mikro-orm/migrations";

export class Migration20261203163309_segments extends Migration {
  override name = "Migration20261203163309_segments";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "operations"."crm_segment" ("key" varchar(64) not null, "name" varchar(200) not null default '', "definition" jsonb not null, "version" int not null, "created_at" timestamptz not null, "updated_at" timestamptz not null, "evaluated_at" timestamptz null, primary key ("key"));`,
    );
    this.addSql(
      `create table "operations"."crm_segment_member" ("segment_key" varchar(64) not null, "contact_id" uuid not null, "joined_at" timestamptz not null, primary key ("segment_key", "contact_id"));`,
    );
    this.addSql(
      `create index "crm_segment_member_contact_id_index" on "operations"."crm_segment_member" ("contact_id");`,
    );
    this.addSql(
      `alter table "operations"."crm_segment_member" add constraint "crm_segment_member_segment_key_foreign" foreign key ("segment_key") references "operations"."crm_segment" ("key") on delete cascade;`,
    );
    this.addSql(
      `alter table "operations"."crm_segment_member" add constraint "crm_segment_member_contact_id_foreign" foreign key ("contact_id") references "operations"."crm_contact" ("id") on delete cascade;`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "operations"."crm_segment_member" cascade;`);
    this.addSql(`drop table if exists "operations"."crm_segment" cascade;`);
  }
}
