/**
 * The population a segmentation evaluates, as the SQL of a relation with `crm_contact`'s columns:
 * every stored contact not merged away, the listed stored contacts, or the request's inline
 * contacts (sent as one JSON parameter and unpacked by `jsonb_to_recordset`, so inline and stored
 * contacts go through the same compiled rules; behaviour conditions count the stored interactions
 * of an inline contact's id).
 */
import { toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { PostalAddressSchema } from "../../../gen/mesh/common/v1/types_pb.ts";
import { AttributeSchema, type Contact } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { SqlFragment } from "./sql.ts";

/** Columns every population relation has, in `crm_contact`'s names. */
const columns =
  "id, email, given_name, family_name, phone, company, title, address, city, region, source, lifecycle_stage, attributes, created_at, updated_at";

/** The population of a request: stored (all or `contactIds`) or inline `contacts`. */
export function populationSql(
  schema: string,
  contactIds: readonly string[],
  contacts: readonly Contact[],
  asOf: Date,
): SqlFragment {
  if (contacts.length > 0) {
    const rows = contacts.map((c) => ({
      id: c.id.toLowerCase(),
      email: c.email === "" ? null : c.email.trim().toLowerCase(),
      given_name: c.givenName,
      family_name: c.familyName,
      phone: c.phone,
      company: c.company,
      title: c.title,
      address: c.address === undefined ? null : toJson(PostalAddressSchema, c.address),
      city: c.city,
      region: c.region,
      source: c.source,
      lifecycle_stage: c.lifecycleStage,
      attributes: c.attributes.map((a) => toJson(AttributeSchema, a)),
      created_at: (c.createdAt === undefined ? asOf : timestampDate(c.createdAt)).toISOString(),
      updated_at: (c.updatedAt === undefined ? asOf : timestampDate(c.updatedAt)).toISOString(),
    }));
    return {
      sql:
        `select ${columns} from jsonb_to_recordset(?::jsonb) as r(id uuid, email text, given_name text, family_name text, ` +
        "phone text, company text, title text, address jsonb, city text, region text, source text, lifecycle_stage int, " +
        "attributes jsonb, created_at timestamptz, updated_at timestamptz)",
      params: [JSON.stringify(rows)],
    };
  }
  const base = `select ${columns} from ${schema}."crm_contact" where merged_into_id is null`;
  if (contactIds.length === 0) return { sql: base, params: [] };
  return { sql: `${base} and id = any(array[?]::uuid[])`, params: [contactIds.map((id) => id.toLowerCase())] };
}
