/**
 * Who a contact is, for a follow-up: the CRM's stored contact (GetContact, through the generated
 * client — never the CRM's code), reduced to what the messages and the schedule use. The time zone
 * is the contact's `time_zone` attribute when it names an IANA zone.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { CrmService } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { MeshClient } from "../../../lib/transport/index.ts";

/** A contact as a follow-up needs it. */
export interface FollowUpContact {
  readonly contactId: string;
  /** Email address; "" when the CRM has none. */
  readonly email: string;
  /** Display name (given and family name). */
  readonly name: string;
  readonly givenName: string;
  readonly familyName: string;
  readonly city: string;
  readonly region: string;
  readonly company: string;
  /** IANA zone from the contact's `time_zone` attribute; "" when unknown. */
  readonly timeZone: string;
}

/** Resolves a contact id; undefined when the CRM has no such contact. */
export type ContactLookup = (contactId: string) => Promise<FollowUpContact | undefined>;

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A lookup through the CRM's GetContact (a contact merged into another resolves to the survivor's data). */
export function crmContactLookup(client: MeshClient): ContactLookup {
  const crm = client.agent(CrmService);
  return async (contactId) => {
    if (!uuid.test(contactId)) return undefined;
    try {
      const res = await crm.getContact({ contactId });
      const c = res.contact;
      if (c === undefined) return undefined;
      const tz = c.attributes.find((a) => a.key === "time_zone")?.value?.kind;
      return {
        contactId,
        email: c.email,
        name: [c.givenName, c.familyName].filter((s) => s !== "").join(" "),
        givenName: c.givenName,
        familyName: c.familyName,
        city: c.city || c.address?.locality || "",
        region: c.region || c.address?.region || "",
        company: c.company,
        timeZone: tz?.case === "stringValue" ? tz.value : "",
      };
    } catch (err) {
      if (err instanceof ConnectError && err.code === Code.NotFound) return undefined;
      throw err;
    }
  };
}

/** Resolves many ids, a few at a time. */
export async function lookupAll(
  lookup: ContactLookup,
  ids: readonly string[],
  concurrency = 8,
): Promise<Map<string, FollowUpContact | undefined>> {
  const out = new Map<string, FollowUpContact | undefined>();
  let next = 0;
  const lane = async () => {
    while (next < ids.length) {
      const id = ids[next++] as string;
      out.set(id, await lookup(id));
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, ids.length) }, lane));
  return out;
}
