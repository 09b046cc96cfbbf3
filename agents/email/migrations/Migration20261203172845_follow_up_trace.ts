import { Migration } from "@mikro-orm/migrations";

/**
 * Follow-up steps remember the trace that planned them (W3C `traceparent`/`tracestate`), so the
 * scheduler's send continues the trace of the enrolment (e.g. the CRM segment join it came from).
 */
export class Migration20261203172845_follow_up_trace extends Migration {
  override name = "Migration20261203172845_follow_up_trace";

  override up(): void | Promise<void> {
    this.addSql(`alter table "operations"."email_follow_up_send" add column "trace_context" jsonb null;`);
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "operations"."email_follow_up_send" drop column if exists "trace_context";`);
  }
}
