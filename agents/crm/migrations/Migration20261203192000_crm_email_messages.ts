import { Migration } from "@mikro-orm/migrations";

/** The CRM's copy of the emails sent to its contacts, for the timeline and data-subject requests. */
export class Migration20261203192000_crm_email_messages extends Migration {
  override name = "Migration20261203192000_crm_email_messages";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "operations"."crm_email_message" ("id" uuid not null, "message_id" varchar(255) not null, "contact_id" uuid not null, "recipient" varchar(254) not null, "subject" varchar(300) not null default '', "kind" smallint not null, "tag" varchar(64) not null default '', "campaign_id" varchar(64) not null default '', "sequence_id" varchar(64) not null default '', "step_index" int not null default 0, "status" smallint not null, "sent_at" timestamptz not null, "recorded_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(
      `alter table "operations"."crm_email_message" add constraint "crm_email_message_message_id_unique" unique ("message_id");`,
    );
    this.addSql(
      `create index "crm_email_message_contact_index" on "operations"."crm_email_message" ("contact_id", "sent_at" desc, "id" desc);`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "operations"."crm_email_message" cascade;`);
  }
}
