/**
 * Keeps senders' do-not-contact copies complete when the CRM learns a new address of a blocked
 * person: a durable consumer of the CRM's own `interaction_tracked` re-announces the addresses of a
 * contact whose email is blocked (do-not-contact entry or consent withdrawn), in the inbox
 * transaction, so an address stitched after the change is blocked like the others.
 */
import { type Bus, decodeEvent, type Running } from "../../../lib/bus/index.ts";
import type { Database } from "../../../lib/db/index.ts";
import { InteractionTracked } from "../events.ts";
import { announceIfBlocked } from "./consent.ts";

/** Durable name shared by every CRM instance. */
export const CONSENT_FOLLOWER = "crm_consent_follower";

/** Starts the consumer. */
export function startConsentFollower(deps: { db: Database; bus: Bus; now: () => Date }): Promise<Running> {
  return deps.bus.consume(
    { stream: "events", durable: CONSENT_FOLLOWER, filter: deps.bus.eventSubject(InteractionTracked) },
    async (d, em) => {
      if (em === undefined) throw new Error("the consent follower runs in inbox mode");
      const e = decodeEvent(InteractionTracked, d);
      if (e.contactId !== "") await announceIfBlocked(deps, em, e.contactId);
    },
    { db: deps.db },
  );
}
