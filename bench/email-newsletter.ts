/**
 * Newsletter sending: one campaign (the contract's example issue, MJML-rendered, personalised per
 * recipient, with a signed one-click unsubscribe URL and DKIM signature each) to 10,000 recipients
 * by default, queued with SendNewsletter and delivered by the send worker (claim, SMTP over pooled
 * connections, record) into a local SMTP server (smtp-server) that accepts and counts messages. The
 * time runs from the SendNewsletter call to the last outcome recorded; the target is ≥ 200
 * messages/s. It runs in process on an isolated database of the local PostgreSQL.
 *
 * `node bench/email-newsletter.ts [recipients]` runs it alone and prints the result.
 */

import { spawn } from "node:child_process";
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { create } from "@bufbuild/protobuf";
import { createMailTransport } from "../agents/email/delivery.ts";
import { loadUnsubscribeKey } from "../agents/email/newsletter/unsubscribe.ts";
import { createNewsletterWorker } from "../agents/email/newsletter/worker.ts";
import { createNewsletter } from "../agents/email/skills/create-newsletter.ts";
import { getNewsletterReport } from "../agents/email/skills/newsletter-report.ts";
import { sendNewsletter } from "../agents/email/skills/send-newsletter.ts";
import {
  CreateNewsletterRequestSchema,
  GetNewsletterReportRequestSchema,
  SendNewsletterRequestSchema,
} from "../gen/mesh/email/v1/email_service_pb.ts";
import { openDatabase } from "../lib/db/index.ts";
import { createLogger } from "../lib/log/index.ts";
import { domains } from "../servers/domains.ts";
import { isolatedDatabase } from "../test/support/backbone.ts";

/** The SMTP server's process: answers `port` and `counts` (messages and recipients received twice) on stdin. */
const SINK = `
import { SMTPServer } from "smtp-server";
import { createInterface } from "node:readline";
const seen = new Map();
let messages = 0;
const server = new SMTPServer({ authOptional: true, disabledCommands: ["STARTTLS", "AUTH"], logger: false, maxClients: 256,
  onData(stream, session, callback) {
    stream.on("data", () => {});
    stream.on("end", () => { messages++; for (const r of session.envelope.rcptTo) seen.set(r.address, (seen.get(r.address) ?? 0) + 1); callback(null); });
  } });
const ready = new Promise((r) => server.listen(0, "127.0.0.1", () => r(server.server.address().port)));
createInterface({ input: process.stdin }).on("line", async (q) => {
  if (q === "port") process.stdout.write(String(await ready) + "\\n");
  if (q === "counts") process.stdout.write(messages + " " + [...seen.values()].filter((n) => n > 1).length + "\\n");
});
`;

/** Result of the scenario. */
export interface EmailNewsletterResult {
  recipients: number;
  /** SendNewsletter (validation, assignment, one insert), ms. */
  queueMs: number;
  /** From the call to the last recorded outcome, s. */
  seconds: number;
  messagesPerSecond: number;
  sent: number;
  received: number;
  duplicates: number;
  htmlBytes: number;
}

/** Runs the scenario once. */
export async function benchEmailNewsletter(opts: { recipients: number }): Promise<EmailNewsletterResult> {
  const log = createLogger("error");
  const handle = await isolatedDatabase();
  const db = await openDatabase({ url: handle.url, domain: domains.operations, log });
  // The SMTP server runs in a process of its own, as a real one would: it accepts and counts.
  const sink = spawn(process.execPath, ["--input-type=module", "-e", SINK], {
    cwd: join(import.meta.dirname, ".."),
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = createInterface({ input: sink.stdout as NodeJS.ReadableStream });
  const replies: ((line: string) => void)[] = [];
  lines.on("line", (l) => replies.shift()?.(l));
  const ask = (q: string) =>
    new Promise<string>((r) => {
      replies.push(r);
      sink.stdin?.write(`${q}\n`);
    });
  const port = Number(await ask("port"));
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const transport = createMailTransport({
    smtpUrl: `smtp://127.0.0.1:${port}`,
    outboxDir: "/nonexistent",
    poolConnections: 16,
    dkim: {
      domain: "example.com",
      selector: "bench",
      privateKey: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    },
  });
  const now = () => new Date();
  try {
    const created = await createNewsletter(
      { db, now, dkimConfigured: true },
      create(CreateNewsletterRequestSchema, {
        requestId: randomUUID(),
        title: "Austin Senior Living News - April 2025",
        segmentId: "austin-families",
        sender: { name: "Example Senior Living", address: "news@example.com" },
        intro: "Hello {{first_name|there}}, here is this month's guide.",
        sections: [
          {
            heading: "This month's guide",
            articles: [
              {
                title: "Choosing Assisted Living in Austin, TX",
                summary: "What assisted living includes, what it costs and what to ask on a tour.",
                url: "https://example.com/guides/assisted-living-austin",
                imageUrl: "https://cdn.example.com/img/austin-dining-room-640w.jpg",
                imageAlt: "Residents sharing lunch in a sunlit dining room",
                ctaText: "Read the guide",
              },
            ],
          },
        ],
        subjectVariants: [{ variantId: "A", subject: "{{first_name|Friend}}, your April guide" }],
        unsubscribe: { url: "https://example.com/email/unsubscribe", mailto: "unsubscribe@example.com" },
        postalAddress: {
          streetLines: ["100 Congress Ave"],
          locality: "Austin",
          region: "TX",
          postalCode: "78701",
          countryCode: "US",
        },
        utmCampaign: "newsletter-2025-04",
      }),
    );
    const worker = createNewsletterWorker({
      db,
      bus: { prefix: "bench" },
      transport,
      log,
      now,
      nodeId: "bench",
      key: () => loadUnsubscribeKey(db, undefined, now),
      batch: 500,
      concurrency: 32,
      pollMs: 20,
    });
    const started = performance.now();
    await sendNewsletter(
      { db, now },
      create(SendNewsletterRequestSchema, {
        requestId: randomUUID(),
        campaignId: created.campaignId,
        recipients: Array.from({ length: opts.recipients }, (_, i) => ({
          address: `reader${i}@example.org`,
          name: `Reader ${i}`,
          fields: { first_name: `Reader${i}` },
        })),
      }),
    );
    const queueMs = performance.now() - started;
    for (;;) {
      const r = await worker.round();
      if (r.claimed === 0) break;
    }
    const seconds = (performance.now() - started) / 1000;
    const report = await getNewsletterReport(
      { db },
      create(GetNewsletterReportRequestSchema, { campaignId: created.campaignId }),
    );
    const sent = Number(report.sent);
    const [received = 0, duplicates = 0] = (await ask("counts")).split(" ").map(Number);
    return {
      recipients: opts.recipients,
      queueMs: Math.round(queueMs),
      seconds: Number(seconds.toFixed(3)),
      messagesPerSecond: Math.round(sent / seconds),
      sent,
      received,
      duplicates,
      htmlBytes: Number(created.htmlByteSize),
    };
  } finally {
    transport.close();
    sink.kill();
    await db.close();
    await handle.drop();
  }
}

if (import.meta.main) {
  const recipients = Number(process.argv[2] ?? 10_000);
  const r = await benchEmailNewsletter({ recipients });
  process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  process.exit(0);
}
