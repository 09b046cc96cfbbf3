import { Migration } from "@mikro-orm/migrations";

export class Migration20261203162213_consent_privacy extends Migration {
  override name = "Migration20261203162213_consent_privacy";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "operations"."crm_consent_record" ("id" uuid not null, "request_id" uuid not null, "contact_id" uuid not null, "channel" int not null, "state" int not null, "source" varchar(64) not null, "occurred_at" timestamptz not null, "recorded_at" timestamptz not null, primary key ("id"));`,
    );
    this.addSql(
      `alter table "operations"."crm_consent_record" add constraint "crm_consent_record_request_id_unique" unique ("request_id");`,
    );
    this.addSql(
      `create index "crm_consent_record_contact_id_recorded_at_id_index" on "operations"."crm_consent_record" ("contact_id", "recorded_at", "id");`,
    );
    this.addSql(
      `create table "operations"."crm_consent" ("contact_id" uuid not null, "channel" int not null, "state" int not null, "source" varchar(64) not null, "occurred_at" timestamptz not null, "record_id" uuid not null, "updated_at" timestamptz not null, primary key ("contact_id", "channel"));`,
    );
    this.addSql(
      `create table "operations"."crm_do_not_contact" ("id" uuid not null, "email" varchar(254) null, "contact_id" uuid null, "email_sha256" varchar(64) null, "reason" varchar(200) not null default '', "source" varchar(64) not null default '', "created_at" timestamptz not null, primary key ("id"), constraint "crm_do_not_contact_target_check" check ("email" is not null or "contact_id" is not null or "email_sha256" is not null));`,
    );
    this.addSql(
      `alter table "operations"."crm_do_not_contact" add constraint "crm_do_not_contact_email_unique" unique ("email");`,
    );
    this.addSql(
      `alter table "operations"."crm_do_not_contact" add constraint "crm_do_not_contact_contact_id_unique" unique ("contact_id");`,
    );
    this.addSql(
      `alter table "operations"."crm_do_not_contact" add constraint "crm_do_not_contact_email_sha256_unique" unique ("email_sha256");`,
    );
    this.addSql(
      `create index "crm_do_not_contact_created_at_id_index" on "operations"."crm_do_not_contact" ("created_at", "id");`,
    );
    this.addSql(
      `create table "operations"."crm_erasure_audit" ("id" uuid not null, "request_id" uuid not null, "contact_id" uuid not null, "requested_by" varchar(200) not null default '', "caller" varchar(200) not null default '', "erased_at" timestamptz not null, "counts" jsonb not null, primary key ("id"));`,
    );
    this.addSql(
      `alter table "operations"."crm_erasure_audit" add constraint "crm_erasure_audit_request_id_unique" unique ("request_id");`,
    );
    this.addSql(
      `create index "crm_erasure_audit_contact_id_index" on "operations"."crm_erasure_audit" ("contact_id");`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "operations"."crm_erasure_audit" cascade;`);
    this.addSql(`drop table if exists "operations"."crm_do_not_contact" cascade;`);
    this.addSql(`drop table if exists "operations"."crm_consent" cascade;`);
    this.addSql(`drop table if exists "operations"."crm_consent_record" cascade;`);
  }
}
