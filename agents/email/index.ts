/** The Email agent: newsletters, follow-up sequences and single messages (outreach, transactional). */

import type { EntitySchema } from "@mikro-orm/postgresql";
import { EmailService } from "../../gen/mesh/email/v1/email_service_pb.ts";
import { defineAgent } from "../../lib/server/index.ts";
import { createMailTransport, parseMailbox } from "./delivery.ts";
import { emailEntities } from "./entities.ts";
import { migrations } from "./migrations/index.ts";
import { sendEmail } from "./skills/send-email.ts";

/** Email agent module; skills not listed in `implemented` answer UNIMPLEMENTED until their issue lands. */
export const emailAgent = defineAgent({
  id: "email",
  service: EmailService,
  implemented: ["SendEmail"],
  data: { entities: emailEntities as readonly EntitySchema[], migrations },
  create: (deps) => {
    // The mail settings (MESH_SMTP_URL, MESH_EMAIL_OUTBOX_DIR, MESH_EMAIL_FROM) come from the server's
    // configuration, checked when it started.
    const { config } = deps;
    const transport = createMailTransport({ smtpUrl: config.smtpUrl, outboxDir: config.emailOutboxDir });
    const defaultFrom = parseMailbox(config.emailFrom);
    return {
      sendEmail: (req) => sendEmail({ db: deps.db, now: deps.now, log: deps.log, transport, defaultFrom }, req),
    };
  },
});
