import { Migration } from "@mikro-orm/migrations";

export class Migration20261125040824_retry_policies extends Migration {
  override name = "Migration20261125040824_retry_policies";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "technical"."retry_policy" ("id" bigserial primary key, "target_kind" int not null, "target_name" varchar(256) not null, "max_attempts" int not null, "base_backoff_ms" int not null, "max_backoff_ms" int not null, "jitter" int not null, "retryable_rpc_codes" jsonb not null, "retryable_http_statuses" jsonb not null, "honour_retry_after" boolean not null default false, "max_retry_after_ms" int not null, "max_elapsed_ms" int null, "created_at" timestamptz not null, "updated_at" timestamptz not null, "version" int not null default 1);`,
    );
    this.addSql(
      `alter table "technical"."retry_policy" add constraint "retry_policy_target_kind_target_name_unique" unique ("target_kind", "target_name");`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "technical"."retry_policy" cascade;`);
  }
}
