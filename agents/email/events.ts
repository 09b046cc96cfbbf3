/** Domain events the Email agent publishes (through the transactional outbox). */
import { createHash } from "node:crypto";
import { MessageSentSchema } from "../../gen/mesh/email/v1/email_events_pb.ts";
import { defineEvent } from "../../lib/bus/index.ts";

/** A message was handed to the transport: `<prefix>.events.email.message_sent`. */
export const MessageSent = defineEvent("email", "message_sent", MessageSentSchema);

/**
 * The bus message id of a message's `MessageSent`, fixed by its Message-ID: a republish is
 * deduplicated by JetStream, and consumers' inboxes see one id per message.
 */
export function messageSentId(messageId: string): string {
  return `message_sent.${createHash("sha256").update(messageId).digest("hex")}`;
}
