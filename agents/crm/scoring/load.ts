/**
 * Reading what scoring needs from the CRM's tables: contacts by id and, per contact, the most
 * recent interactions of the types a model reads (bounded per contact: older ones are left out,
 * which with decay changes a score negligibly, and is documented).
 */
import type { Contact } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { EntityManager } from "../../../lib/db/index.ts";
import { contactFromRow } from "../contacts/records.ts";
import { CrmContact } from "../entities.ts";
import type { ScoredInteraction } from "./evaluate.ts";

/** Most interactions read per contact (newest first). */
export const maxInteractionsPerContact = 5000;

/** A PostgreSQL array literal of UUIDs or integers (values are checked by the caller's contract). */
function arrayLiteral(values: readonly (string | number)[]): string {
  return `{${values.join(",")}}`;
}

/** Stored contacts by id (lower-cased ids); missing ids are absent from the map. */
export async function loadContacts(em: EntityManager, ids: readonly string[]): Promise<Map<string, Contact>> {
  if (ids.length === 0) return new Map();
  const rows = await em.find(CrmContact, { id: { $in: [...ids] } });
  return new Map(rows.map((r) => [r.id, contactFromRow(r)]));
}

interface InteractionRow {
  contact_id: string;
  event_id: string;
  type: number;
  channel: number;
  url: string;
  at_ms: string | number;
}

/**
 * The interactions of `types` of each contact at or before `asOf`, newest first, at most
 * {@link maxInteractionsPerContact} per contact.
 */
export async function loadInteractions(
  em: EntityManager,
  schema: string,
  contactIds: readonly string[],
  types: readonly number[],
  asOf: Date,
): Promise<Map<string, ScoredInteraction[]>> {
  const out = new Map<string, ScoredInteraction[]>();
  if (contactIds.length === 0 || types.length === 0) return out;
  const rows = (await em.execute(
    `select c.id as contact_id, i.event_id, i.type, i.channel, i.url, (extract(epoch from i.occurred_at) * 1000)::float8 as at_ms` +
      ` from unnest(?::uuid[]) as c(id) cross join lateral (` +
      ` select event_id, type, channel, url, occurred_at from "${schema}"."crm_interaction" x` +
      ` where x.contact_id = c.id and x.type = any(?::int[]) and x.occurred_at <= ?` +
      ` order by x.occurred_at desc, x.id desc limit ?) i`,
    [arrayLiteral(contactIds), arrayLiteral(types), asOf, maxInteractionsPerContact],
  )) as InteractionRow[];
  for (const r of rows) {
    let list = out.get(r.contact_id);
    if (list === undefined) {
      list = [];
      out.set(r.contact_id, list);
    }
    list.push({ eventId: r.event_id, type: r.type, channel: r.channel, url: r.url, occurredAtMs: Number(r.at_ms) });
  }
  return out;
}
