import { Migration } from "@mikro-orm/migrations";

export class Migration20261203163031_appointments extends Migration {
  override name = "Migration20261203163031_appointments";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "operations"."crm_calendar" ("id" bigserial primary key, "email" varchar(254) not null, "time_zone" varchar(64) not null default 'UTC', "window_start" timestamptz null, "window_end" timestamptz null, "events" int not null default 0, "imported_at" timestamptz null, "created_at" timestamptz not null);`,
    );
    this.addSql(`alter table "operations"."crm_calendar" add constraint "crm_calendar_email_unique" unique ("email");`);

    this.addSql(
      `create table "operations"."crm_calendar_busy" ("id" bigserial primary key, "calendar_id" bigint not null, "start_at" timestamptz not null, "end_at" timestamptz not null);`,
    );
    this.addSql(
      `create index "crm_calendar_busy_calendar_id_start_at_index" on "operations"."crm_calendar_busy" ("calendar_id", "start_at");`,
    );
    this.addSql(
      `alter table "operations"."crm_calendar_busy" add constraint "crm_calendar_busy_calendar_id_foreign" foreign key ("calendar_id") references "operations"."crm_calendar" ("id");`,
    );

    this.addSql(
      `create table "operations"."crm_appointment" ("id" uuid not null, "uid" varchar(255) not null, "organizer_email" varchar(254) not null, "organizer_name" varchar(200) not null default '', "attendees" jsonb not null, "time_zone" varchar(64) not null, "working_hours" jsonb not null, "buffer_seconds" int not null default 0, "summary" varchar(200) not null, "description" text not null default '', "location" varchar(500) not null default '', "meeting_url" varchar(2048) not null default '', "reminder_seconds" int not null default 0, "deal_id" uuid null, "start_at" timestamptz not null, "end_at" timestamptz not null, "sequence" int not null default 0, "status" varchar(16) not null, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(
      `alter table "operations"."crm_appointment" add constraint "crm_appointment_uid_unique" unique ("uid");`,
    );
    this.addSql(
      `create index "crm_appointment_organizer_email_index" on "operations"."crm_appointment" ("organizer_email");`,
    );

    this.addSql(
      `create table "operations"."crm_appointment_hold" ("appointment_id" uuid not null, "calendar_id" bigint not null, "start_at" timestamptz not null, "end_at" timestamptz not null, primary key ("appointment_id", "calendar_id"));`,
    );
    // No two holds of one calendar overlap (see agents/crm/appointments/entities.ts).
    this.addSql(
      `alter table "operations"."crm_appointment_hold" add constraint "crm_appointment_hold_no_overlap" exclude using gist (int8range("calendar_id", "calendar_id", '[]') with &&, tstzrange("start_at", "end_at", '[)') with &&);`,
    );

    this.addSql(
      `create table "operations"."crm_appointment_change" ("id" uuid not null, "appointment_id" uuid not null, "request_id" uuid not null, "request_hash" varchar(64) not null, "sequence" int not null, "method" varchar(8) not null, "ics" text not null, "start_at" timestamptz not null, "end_at" timestamptz not null, "created_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(
      `alter table "operations"."crm_appointment_change" add constraint "crm_appointment_change_request_id_unique" unique ("request_id");`,
    );
    this.addSql(
      `create index "crm_appointment_change_appointment_id_index" on "operations"."crm_appointment_change" ("appointment_id");`,
    );
    this.addSql(
      `alter table "operations"."crm_appointment_change" add constraint "crm_appointment_change_appointment_id_foreign" foreign key ("appointment_id") references "operations"."crm_appointment" ("id");`,
    );

    this.addSql(
      `create table "operations"."crm_appointment_invite" ("email_request_id" uuid not null, "change_id" uuid not null, "email" varchar(254) not null, "name" varchar(200) not null default '', "status" varchar(16) not null, "message_id" varchar(300) not null default '', "error" text not null default '', "updated_at" timestamptz not null, primary key ("email_request_id"));`,
    );
    this.addSql(
      `create index "crm_appointment_invite_change_id_index" on "operations"."crm_appointment_invite" ("change_id");`,
    );
    this.addSql(
      `alter table "operations"."crm_appointment_invite" add constraint "crm_appointment_invite_change_id_foreign" foreign key ("change_id") references "operations"."crm_appointment_change" ("id");`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "operations"."crm_appointment_invite" cascade;`);
    this.addSql(`drop table if exists "operations"."crm_appointment_change" cascade;`);
    this.addSql(`drop table if exists "operations"."crm_appointment_hold" cascade;`);
    this.addSql(`drop table if exists "operations"."crm_appointment" cascade;`);
    this.addSql(`drop table if exists "operations"."crm_calendar_busy" cascade;`);
    this.addSql(`drop table if exists "operations"."crm_calendar" cascade;`);
  }
}
