import { Migration } from "@mikro-orm/migrations";

/**
 * When each stored segment is next re-evaluated because time alone may change its membership
 * (segments/schedule.ts). Segments stored before are all due at once: the scheduler evaluates the
 * time-relative ones and clears the rest without evaluating them.
 */
export class Migration20261203191800_segment_schedule extends Migration {
  override name = "Migration20261203191800_segment_schedule";

  override up(): void | Promise<void> {
    this.addSql(`alter table "operations"."crm_segment" add column "next_evaluation_at" timestamptz null;`);
    this.addSql(
      `create index "crm_segment_next_evaluation_at_index" on "operations"."crm_segment" ("next_evaluation_at");`,
    );
    this.addSql(`update "operations"."crm_segment" set "next_evaluation_at" = now();`);
  }

  override down(): void | Promise<void> {
    this.addSql(`drop index if exists "operations"."crm_segment_next_evaluation_at_index";`);
    this.addSql(`alter table "operations"."crm_segment" drop column if exists "next_evaluation_at";`);
  }
}
