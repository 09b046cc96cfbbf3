/**
 * Keeps the CRM's copy of sent emails (store.ts): a durable consumer of the Email agent's
 * `<prefix>.events.email.message_sent`, in inbox mode, so each event takes effect once however
 * often it is redelivered; the copy is written in the inbox transaction.
 */
import { MessageSentSchema } from "../../../gen/mesh/email/v1/email_events_pb.ts";
import { type Bus, decodeEvent, defineEvent, type Running } from "../../../lib/bus/index.ts";
import type { Database } from "../../../lib/db/index.ts";
import type { Logger } from "../../../lib/log/index.ts";
import { storeSentMessage } from "./store.ts";

/** The Email agent's announcement of a sent message, as the CRM consumes it. */
export const EmailMessageSent = defineEvent("email", "message_sent", MessageSentSchema);

/** Durable name shared by every CRM instance. */
export const EMAIL_COPY_CONSUMER = "crm_email_messages";

/** What the consumer needs. */
export interface EmailCopyDeps {
  readonly db: Database;
  readonly bus: Bus;
  readonly now: () => Date;
  readonly log: Logger;
}

/** Starts the consumer. */
export function startEmailCopyConsumer(deps: EmailCopyDeps): Promise<Running> {
  return deps.bus.consume(
    { stream: "events", durable: EMAIL_COPY_CONSUMER, filter: deps.bus.eventSubject(EmailMessageSent) },
    async (d, em) => {
      if (em === undefined) throw new Error("the email copy consumer runs in inbox mode");
      const outcome = await storeSentMessage(deps.db, em, decodeEvent(EmailMessageSent, d), deps.now());
      // An address the CRM does not know is no error: mail goes to people who are not contacts.
      if (!outcome.stored && outcome.reason === "invalid") {
        deps.log.warn("email message_sent event without a message id or send time ignored", { msgId: d.msgId });
      }
    },
    { db: deps.db },
  );
}
