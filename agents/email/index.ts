/** The Email agent: newsletters, follow-up sequences and single messages (outreach, transactional). */
import { EmailService } from "../../gen/mesh/email/v1/email_service_pb.ts";
import { loadConfig } from "../../lib/config/index.ts";
import { defineAgent } from "../../lib/server/agent.ts";
import { createMailTransport, parseMailbox } from "./delivery.ts";
import { sendEmail } from "./skills/send-email.ts";

/** Email agent module; skills not listed in `implemented` answer UNIMPLEMENTED until their issue lands. */
export const emailAgent = defineAgent({
  id: "email",
  service: EmailService,
  implemented: ["SendEmail"],
  create: (deps) => {
    // AgentDeps carries no configuration: the mail settings come from the one config loader
    // (MESH_SMTP_URL, MESH_EMAIL_OUTBOX_DIR, MESH_EMAIL_FROM), checked when the server starts.
    const config = loadConfig();
    const transport = createMailTransport({ smtpUrl: config.smtpUrl, outboxDir: config.emailOutboxDir });
    const defaultFrom = parseMailbox(config.emailFrom);
    return {
      sendEmail: (req) => sendEmail({ db: deps.db, now: deps.now, log: deps.log, transport, defaultFrom }, req),
    };
  },
});
