import { Migration } from "@mikro-orm/migrations";

/**
 * The append-only history of segment joins and leaves (for the contact timeline), and indexes the
 * timeline and erasure read appointments by: attendees by containment (GIN), invitations by address.
 */
export class Migration20261203172913_timeline_history extends Migration {
  override name = "Migration20261203172913_timeline_history";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "operations"."crm_segment_membership_change" ("id" uuid not null, "segment_key" varchar(64) not null, "contact_id" uuid not null, "action" varchar(8) not null, "segment_version" int not null, "cause" varchar(200) not null default '', "changed_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(
      `create index "crm_segment_membership_change_contact_index" on "operations"."crm_segment_membership_change" ("contact_id", "changed_at" desc, "id" desc);`,
    );
    this.addSql(
      `create index "crm_appointment_attendees_index" on "operations"."crm_appointment" using gin ("attendees" jsonb_path_ops);`,
    );
    this.addSql(
      `create index "crm_appointment_invite_email_index" on "operations"."crm_appointment_invite" ("email");`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop index if exists "operations"."crm_appointment_invite_email_index";`);
    this.addSql(`drop index if exists "operations"."crm_appointment_attendees_index";`);
    this.addSql(`drop table if exists "operations"."crm_segment_membership_change" cascade;`);
  }
}
