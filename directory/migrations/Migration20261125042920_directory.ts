import { Migration } from "@mikro-orm/migrations";

export class Migration20261125042920_directory extends Migration {
  override name = "Migration20261125042920_directory";

  override up(): void | Promise<void> {
    this.addSql(
      `create table "technical"."directory_city" ("id" varchar(120) not null, "geonames_id" int not null, "name" varchar(200) not null, "state_code" varchar(2) not null, "state_name" varchar(64) not null, "latitude" double precision not null, "longitude" double precision not null, "population" int not null, "rank" int not null, "neighbours" jsonb not null, "content_hash" varchar(64) not null, "updated_at" timestamptz not null, "version" int not null default 1, primary key ("id"));`,
    );
    this.addSql(
      `alter table "technical"."directory_city" add constraint "directory_city_geonames_id_unique" unique ("geonames_id");`,
    );
    this.addSql(`create index "directory_city_rank_index" on "technical"."directory_city" ("rank");`);
    this.addSql(
      `create index "directory_city_state_code_rank_index" on "technical"."directory_city" ("state_code", "rank");`,
    );

    this.addSql(
      `create table "technical"."directory_community" ("id" varchar(200) not null, "city_id" varchar(120) not null, "sample" boolean not null default true, "name" varchar(200) not null, "kind" varchar(32) not null, "description" text not null, "street_address" varchar(200) not null, "locality" varchar(200) not null, "state_code" varchar(2) not null, "postal_code" varchar(10) not null, "latitude" double precision not null, "longitude" double precision not null, "phone" varchar(16) not null, "care_types" jsonb not null, "prices" jsonb not null, "capacity" int not null, "capacity_unit" varchar(16) not null, "year_opened" int not null, "amenities" jsonb not null, "rating" double precision null, "review_count" int not null default 0, "content_hash" varchar(64) not null, "updated_at" timestamptz not null, "version" int not null default 1, primary key ("id"));`,
    );
    this.addSql(`create index "directory_community_city_id_index" on "technical"."directory_community" ("city_id");`);
    this.addSql(
      `create index "directory_community_state_code_index" on "technical"."directory_community" ("state_code");`,
    );

    this.addSql(
      `alter table "technical"."directory_community" add constraint "directory_community_city_id_foreign" foreign key ("city_id") references "technical"."directory_city" ("id");`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "technical"."directory_community" drop constraint "directory_community_city_id_foreign";`);

    this.addSql(`drop table if exists "technical"."directory_city" cascade;`);
    this.addSql(`drop table if exists "technical"."directory_community" cascade;`);
  }
}
