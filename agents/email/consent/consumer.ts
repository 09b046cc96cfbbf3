/**
 * The durable consumer of `crm.consent_changed`: keeps `email_do_not_contact` in step with the
 * CRM's do-not-contact list and email consent. Each event names addresses by SHA-256 and says which
 * of them are blocked now; a row is replaced only by a change at least as new as the one it holds,
 * so a redelivered or late event never undoes a newer verdict. Inbox mode: each message takes
 * effect once, in the transaction that writes the rows.
 */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ConsentChangedSchema, ConsentChangeKind } from "../../../gen/mesh/crm/v1/crm_events_pb.ts";
import { type Bus, decodeEvent, defineEvent, type Running } from "../../../lib/bus/index.ts";
import type { Database } from "../../../lib/db/index.ts";

/** The CRM's event as this agent reads it (the contract is the generated message, not the CRM's code). */
export const CrmConsentChanged = defineEvent("crm", "consent_changed", ConsentChangedSchema);

/** Durable name shared by every instance hosting the Email agent. */
export const CONSENT_CONSUMER = "email_consent_changed";

const hex64 = /^[0-9a-f]{64}$/;

/** Starts the consumer. */
export function startConsentConsumer(deps: { db: Database; bus: Bus; now: () => Date }): Promise<Running> {
  const { db, bus } = deps;
  return bus.consume(
    { stream: "events", durable: CONSENT_CONSUMER, filter: bus.eventSubject(CrmConsentChanged) },
    async (d, em) => {
      if (em === undefined) throw new Error("consent consumer runs in inbox mode");
      const e = decodeEvent(CrmConsentChanged, d);
      const blocked = new Set(e.blockedEmailSha256);
      const changedAt = e.changedAt ? timestampDate(e.changedAt) : deps.now();
      const reason =
        e.kind === ConsentChangeKind.CONSENT ? "crm: email consent withdrawn" : "crm: on the do-not-contact list";
      const rows = e.emailSha256
        .filter((h) => hex64.test(h))
        .map((h) => ({ h, blocked: blocked.has(h), reason: blocked.has(h) ? reason : "" }));
      if (rows.length === 0) return;
      await em.getConnection().execute(
        `insert into "${db.schema}"."email_do_not_contact" (address_sha256, blocked, reason, changed_at, updated_at)
         select r.h, r.blocked, r.reason, ?, ? from jsonb_to_recordset(?::jsonb) as r(h text, blocked boolean, reason text)
         on conflict (address_sha256) do update set blocked = excluded.blocked, reason = excluded.reason,
           changed_at = excluded.changed_at, updated_at = excluded.updated_at
         where "email_do_not_contact".changed_at <= excluded.changed_at`,
        [changedAt, deps.now(), JSON.stringify(rows)],
        "run",
        em.getTransactionContext(),
      );
    },
    { db },
  );
}
