/** The Email agent: newsletters, follow-up sequences and single messages (outreach, transactional). */

import type { EntitySchema } from "@mikro-orm/postgresql";
import { EmailService } from "../../gen/mesh/email/v1/email_service_pb.ts";
import { type AgentDeps, defineAgent } from "../../lib/server/index.ts";
import { startConsentConsumer } from "./consent/consumer.ts";
import { emailConsentEntities } from "./consent/entities.ts";
import { createSendGuard } from "./consent/guard.ts";
import { eraseRecipientData, exportRecipientData } from "./consent/privacy.ts";
import { createMailTransport, type DkimKey, parseMailbox } from "./delivery.ts";
import { emailEntities } from "./entities.ts";
import { migrations } from "./migrations/index.ts";
import { createUnsubscribeRoute, loadUnsubscribeKey } from "./newsletter/unsubscribe.ts";
import { createNewsletterWorker, type NewsletterWorker } from "./newsletter/worker.ts";
import { crmContactLookup } from "./sequences/contacts.ts";
import { followUpEntities } from "./sequences/entities.ts";
import { consumeSegmentChanges } from "./sequences/segments.ts";
import { consumeConversions } from "./sequences/stops.ts";
import { createFollowUpWorker, type FollowUpWorker } from "./sequences/worker.ts";
import { createNewsletter } from "./skills/create-newsletter.ts";
import { ingestMailFeedback } from "./skills/ingest-mail-feedback.ts";
import { getNewsletterReport, recordNewsletterEngagement } from "./skills/newsletter-report.ts";
import { recordFollowUpEngagement } from "./skills/record-follow-up-engagement.ts";
import { runFollowUpSequence } from "./skills/run-follow-up-sequence.ts";
import { sendEmail } from "./skills/send-email.ts";
import { sendNewsletter } from "./skills/send-newsletter.ts";

/**
 * Email settings the server's configuration may carry beyond the base ones: the DKIM key
 * (MESH_DKIM_DOMAIN, MESH_DKIM_SELECTOR, MESH_DKIM_PRIVATE_KEY_FILE, read into `emailDkimPrivateKey`)
 * and the unsubscribe signing secret (MESH_EMAIL_UNSUBSCRIBE_SECRET). Each is optional: without a
 * key messages go unsigned; without a secret the agent keeps a generated one in its database.
 */
export interface EmailExtraConfig {
  emailDkimDomain?: string | undefined;
  emailDkimSelector?: string | undefined;
  emailDkimPrivateKey?: string | undefined;
  emailUnsubscribeSecret?: string | undefined;
}

/** The DKIM key of a configuration, when all three parts are set. */
export function dkimKeyOf(config: EmailExtraConfig): DkimKey | undefined {
  const { emailDkimDomain: domain, emailDkimSelector: selector, emailDkimPrivateKey: privateKey } = config;
  return domain && selector && privateKey ? { domain, selector, privateKey } : undefined;
}

/** What `create` made for a server start, for `routes` and `background`. */
interface Runtime {
  worker: NewsletterWorker;
  key: () => Promise<Buffer>;
  followUps?: FollowUpWorker;
}
const runtimes = new WeakMap<AgentDeps, Runtime>();

/** Email agent module; skills not listed in `implemented` answer UNIMPLEMENTED until their issue lands. */
export const emailAgent = defineAgent({
  id: "email",
  service: EmailService,
  implemented: [
    "CreateNewsletter",
    "SendEmail",
    "SendNewsletter",
    "GetNewsletterReport",
    "RecordNewsletterEngagement",
    "IngestMailFeedback",
    "RunFollowUpSequence",
    "RecordFollowUpEngagement",
    "ExportRecipientData",
    "EraseRecipientData",
  ],
  data: {
    entities: [...emailEntities, ...emailConsentEntities, ...followUpEntities] as readonly EntitySchema[],
    migrations,
  },
  // SendEmail claims each message in a short transaction of its own and sends outside it.
  selfTransacted: ["SendEmail"],
  create: (deps) => {
    // The mail settings (MESH_SMTP_URL, MESH_EMAIL_OUTBOX_DIR, MESH_EMAIL_FROM) come from the server's
    // configuration, checked when it started.
    const config = deps.config;
    const dkim = dkimKeyOf(config);
    // Every transport checks the send guard (suppressions, do-not-contact) right before each message.
    const guard = createSendGuard(deps.db);
    const transport = createMailTransport({ smtpUrl: config.smtpUrl, outboxDir: config.emailOutboxDir, dkim, guard });
    const defaultFrom = parseMailbox(config.emailFrom);
    let key: Promise<Buffer> | undefined;
    const loadKey = () => {
      key ??= loadUnsubscribeKey(deps.db, config.emailUnsubscribeSecret, deps.now).catch((err: unknown) => {
        key = undefined;
        throw err;
      });
      return key;
    };
    // Newsletters go over pooled connections: thousands of messages, not one.
    const worker = createNewsletterWorker({
      db: deps.db,
      bus: deps.bus,
      transport: createMailTransport({
        smtpUrl: config.smtpUrl,
        outboxDir: config.emailOutboxDir,
        dkim,
        poolConnections: 16,
        guard,
      }),
      log: deps.log,
      now: deps.now,
      nodeId: deps.nodeId,
      key: loadKey,
    });
    // Follow-up steps go through SendEmail itself (the mesh client, in process): the same claim,
    // guard and at-most-once record per request id as every other message.
    const followUps = createFollowUpWorker({
      db: deps.db,
      send: (req) => deps.client.agent(EmailService).sendEmail(req),
      log: deps.log,
      now: deps.now,
      nodeId: deps.nodeId,
      key: loadKey,
    });
    runtimes.set(deps, { worker, key: loadKey, followUps });
    return {
      sendEmail: (req) =>
        sendEmail({ db: deps.db, bus: deps.bus, now: deps.now, log: deps.log, transport, defaultFrom }, req),
      createNewsletter: (req) =>
        createNewsletter({ db: deps.db, now: deps.now, dkimConfigured: dkim !== undefined }, req),
      sendNewsletter: (req) => sendNewsletter({ db: deps.db, now: deps.now, wake: worker.wake }, req),
      getNewsletterReport: (req) => getNewsletterReport(deps, req),
      recordNewsletterEngagement: (req) => recordNewsletterEngagement(deps, req),
      ingestMailFeedback: (req) => ingestMailFeedback(deps, req),
      runFollowUpSequence: (req) =>
        runFollowUpSequence(
          { db: deps.db, now: deps.now, lookup: crmContactLookup(deps.client), wake: followUps.wake },
          req,
        ),
      recordFollowUpEngagement: (req) => recordFollowUpEngagement(deps, req),
      exportRecipientData: (req) => exportRecipientData(deps, req),
      eraseRecipientData: (req) => eraseRecipientData({ ...deps, outboxDir: config.emailOutboxDir }, req),
    };
  },
  // RFC 8058 one-click unsubscribe: POST /email/unsubscribe?token=… on the hosting server's port.
  routes: (deps) => {
    const rt = runtimes.get(deps);
    return rt === undefined ? [] : [createUnsubscribeRoute({ db: deps.db, key: rt.key, now: deps.now, log: deps.log })];
  },
  // The send worker polls the stored sends on every instance hosting the agent; instances split
  // them with SKIP LOCKED, and a restart resumes where the last one stopped.
  // The consent consumer keeps the CRM's do-not-contact verdicts (crm.consent_changed).
  // Follow-ups: the due-step scheduler (same polling pattern), and durable consumers of conversions
  // (stop) and segment joins (enrol in the segment's market cadence).
  background: async (deps) => {
    const rt = runtimes.get(deps);
    runtimes.delete(deps);
    if (rt === undefined) return [];
    const followUps =
      rt.followUps === undefined
        ? []
        : [
            rt.followUps.start(),
            await consumeConversions(deps),
            await consumeSegmentChanges({ ...deps, lookup: crmContactLookup(deps.client) }),
          ];
    return [rt.worker.start(), await startConsentConsumer(deps), ...followUps];
  },
});
