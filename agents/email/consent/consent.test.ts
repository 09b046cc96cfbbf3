import { randomUUID } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConsentChangedSchema, ConsentChangeKind } from "../../../gen/mesh/crm/v1/crm_events_pb.ts";
import {
  CreateNewsletterRequestSchema,
  EmailStatus,
  EraseRecipientDataRequestSchema,
  ExportRecipientDataRequestSchema,
  SendEmailRequestSchema,
  SendNewsletterRequestSchema,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import type { Running } from "../../../lib/bus/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { domains } from "../../../servers/domains.ts";
import { type BackboneFixture, eventually, openBackboneFixture } from "../../../test/support/backbone.ts";
import { type SmtpSink, startSmtpSink } from "../../../test/support/smtp-sink.ts";
import { createMailTransport, type MailTransport, RecipientSuppressedError } from "../delivery.ts";
import { createUnsubscribeRoute, loadUnsubscribeKey } from "../newsletter/unsubscribe.ts";
import { createNewsletterWorker, type NewsletterWorker } from "../newsletter/worker.ts";
import { createNewsletter } from "../skills/create-newsletter.ts";
import { type SendEmailDeps, sendEmail } from "../skills/send-email.ts";
import { sendNewsletter } from "../skills/send-newsletter.ts";
import { CrmConsentChanged, startConsentConsumer } from "./consumer.ts";
import { blockedReason, createSendGuard } from "./guard.ts";
import { eraseRecipientData, exportRecipientData } from "./privacy.ts";

// Python: hashlib.sha256(b"dnc@example.org").hexdigest() — the CRM names addresses this way.
const dncHash = "4139545ab967814b4ca983a21a5d93dac0c5882a16876b63cf52278c1655198a";

const log = createLogger("error");
let clock = Date.parse("2026-04-01T09:00:00Z");
const now = () => new Date(clock);

describe("the send guard: every send path honours unsubscribes and the CRM's do-not-contact list", () => {
  let fx: BackboneFixture;
  let sink: SmtpSink;
  let single: MailTransport;
  let pooled: MailTransport;
  let smtp: SendEmailDeps;
  let worker: NewsletterWorker;
  let consumer: Running;

  beforeAll(async () => {
    fx = await openBackboneFixture(domains.operations, "email-consent-test");
    sink = await startSmtpSink();
    const guard = createSendGuard(fx.db);
    single = createMailTransport({ smtpUrl: sink.url, outboxDir: "/nonexistent", guard });
    pooled = createMailTransport({ smtpUrl: sink.url, outboxDir: "/nonexistent", guard, poolConnections: 2 });
    smtp = {
      db: fx.db,
      bus: fx.bus,
      now,
      log,
      transport: single,
      defaultFrom: { name: "Mesh", address: "noreply@mesh.test" },
    };
    worker = createNewsletterWorker({
      db: fx.db,
      bus: fx.bus,
      transport: pooled,
      log,
      now,
      nodeId: "w1",
      key: () => loadUnsubscribeKey(fx.db, undefined, now),
    });
    consumer = await startConsentConsumer({ db: fx.db, bus: fx.bus, now });
  });
  afterAll(async () => {
    await consumer?.stop();
    single?.close();
    pooled?.close();
    await sink?.close();
    await fx?.dispose();
  });

  const email = (to: string) =>
    sendEmail(
      smtp,
      create(SendEmailRequestSchema, {
        requestId: randomUUID(),
        to: { address: to },
        subject: "Link suggestion for your resources page",
        text: "Hello, a suggestion.",
        tag: "seo.link_outreach",
      }),
    );
  async function newsletterTo(...addresses: string[]): Promise<string> {
    const created = await createNewsletter(
      { db: fx.db, now, dkimConfigured: false },
      create(CreateNewsletterRequestSchema, {
        requestId: randomUUID(),
        title: "April news",
        segmentId: "everyone",
        sender: { name: "Example", address: "news@example.com" },
        intro: "Hello {{first_name|there}}.",
        sections: [{ heading: "News", body: "Our April guide." }],
        subjectVariants: [{ variantId: "A", subject: "April news" }],
        unsubscribe: { url: "https://example.com/email/unsubscribe" },
        postalAddress: {
          streetLines: ["100 Congress Ave"],
          locality: "Austin",
          region: "TX",
          postalCode: "78701",
          countryCode: "US",
        },
      }),
    );
    await sendNewsletter(
      { db: fx.db, now },
      create(SendNewsletterRequestSchema, {
        requestId: randomUUID(),
        campaignId: created.campaignId,
        recipients: addresses.map((address) => ({ address, name: "Reader", fields: { first_name: "Rea" } })),
      }),
    );
    return created.campaignId;
  }
  async function drain(): Promise<void> {
    for (;;) {
      const r = await worker.round();
      if (r.claimed === 0 && r.decided === 0 && r.expired === 0) return;
    }
  }
  const delivered = (to: string) => sink.messages.filter((m) => m.envelopeTo.includes(to)).length;
  async function sendStatus(campaignId: string, recipient: string): Promise<string> {
    const [row] = await fx.db
      .fork()
      .getConnection()
      .execute<{ status: string }[]>(
        `select status from "operations"."email_newsletter_send" where campaign_id = ? and recipient = ?`,
        [campaignId, recipient],
      );
    return row?.status ?? "";
  }

  it("unsubscribing through the one-click endpoint stops every later send of every kind to the address", async () => {
    const reader = "reader@example.org";
    await newsletterTo(reader);
    await drain();
    expect((await email(reader)).status).toBe(EmailStatus.SENT);
    expect(delivered(reader)).toBe(2);

    // The newsletter's List-Unsubscribe URL, posted as a mailbox provider does (RFC 8058).
    const unsubscribeUrls = sink.messages.map(
      (m) => /List-Unsubscribe: <([^>]+)>/.exec(m.raw.toString("utf8").replace(/\r\n(?=[ \t])/g, ""))?.[1],
    );
    const url = new URL(unsubscribeUrls.find((u) => u !== undefined) ?? "");
    const route = createUnsubscribeRoute({ db: fx.db, key: () => loadUnsubscribeKey(fx.db, undefined, now), now, log });
    const server = http.createServer((req, res) => {
      void route(req, res).then((handled) => {
        if (!handled) res.writeHead(404).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const res = await fetch(
        `http://127.0.0.1:${(server.address() as AddressInfo).port}${url.pathname}${url.search}`,
        {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: "List-Unsubscribe=One-Click",
        },
      );
      expect(res.status).toBe(200);
    } finally {
      server.close();
    }

    // SendEmail (outreach, appointment invitations): not sent, and the response says so.
    const outreach = await email("Reader@Example.org");
    expect(outreach.status).toBe(EmailStatus.SUPPRESSED);
    expect(outreach.messageId).toBe("");
    expect(outreach.suppressionReason).toMatch(/^unsubscribed/);
    // Another newsletter: the worker suppresses the row.
    const next = await newsletterTo(reader);
    await drain();
    expect(await sendStatus(next, reader)).toBe("suppressed");
    // Any other path that sends through the agent's transports (follow-up sequences): refused.
    await expect(
      pooled.send({
        messageId: `<${randomUUID()}@example.com>`,
        date: now(),
        from: { name: "", address: "sales@example.com" },
        to: { name: "", address: reader },
        replyTo: undefined,
        subject: "Following up",
        text: "Just checking in.",
        html: undefined,
        inReplyTo: undefined,
        unsubscribeUrl: undefined,
        unsubscribeMailto: undefined,
      }),
    ).rejects.toBeInstanceOf(RecipientSuppressedError);
    expect(delivered(reader)).toBe(2);
  });

  it("applies the CRM's do-not-contact verdicts from crm.consent_changed, newest change winning", async () => {
    const dnc = "dnc@example.org";
    expect((await email(dnc)).status).toBe(EmailStatus.SENT);
    const publish = (blocked: boolean, changedAt: string) =>
      fx.bus.publishEvent(
        CrmConsentChanged,
        create(ConsentChangedSchema, {
          changeId: randomUUID(),
          kind: ConsentChangeKind.DO_NOT_CONTACT_ADDED,
          emailSha256: [dncHash],
          blockedEmailSha256: blocked ? [dncHash] : [],
          changedAt: timestampFromDate(new Date(changedAt)),
        }),
      );
    const inbox = async () => {
      const [r] = await fx.db
        .fork()
        .getConnection()
        .execute<{ n: number }[]>(
          `select count(*)::int as n from "operations"."inbox" where consumer like '%consent%'`,
        );
      return r?.n ?? 0;
    };
    const reason = () => blockedReason(fx.db.fork(), "operations", dnc);

    await publish(true, "2026-04-01T10:00:00Z");
    await eventually(async () => ((await reason()) === undefined ? undefined : true));
    const blocked = await email(dnc);
    expect(blocked.status).toBe(EmailStatus.SUPPRESSED);
    expect(blocked.suppressionReason).toBe("crm: on the do-not-contact list");
    const campaign = await newsletterTo(dnc);
    await drain();
    expect(await sendStatus(campaign, dnc)).toBe("suppressed");

    // A late, older "allowed" is ignored.
    const seen = await inbox();
    await publish(false, "2026-04-01T09:30:00Z");
    await eventually(async () => ((await inbox()) > seen ? true : undefined));
    expect(await reason()).toBe("crm: on the do-not-contact list");

    // A newer one lifts the block.
    await publish(false, "2026-04-01T11:00:00Z");
    await eventually(async () => ((await reason()) === undefined ? true : undefined));
    expect((await email(dnc)).status).toBe(EmailStatus.SENT);
    expect(delivered(dnc)).toBe(2);
  });

  it("exports and erases what it holds about an address, keeping it blocked by a hash only", async () => {
    clock += 60_000;
    const gone = "gone.person@example.org";
    const campaign = await newsletterTo(gone);
    await drain();
    expect((await email(gone)).status).toBe(EmailStatus.SENT);
    const exported = await exportRecipientData(
      { db: fx.db },
      create(ExportRecipientDataRequestSchema, { addresses: ["Gone.Person@example.org"] }),
    );
    expect(exported.messages.map((m) => [m.recipient, m.status])).toEqual([[gone, "sent"]]);
    expect(exported.newsletterSends.map((s) => [s.campaignId, s.recipient, s.name, s.fields.first_name])).toEqual([
      [campaign, gone, "Reader", "Rea"],
    ]);

    const erased = await eraseRecipientData(
      { db: fx.db, now },
      create(EraseRecipientDataRequestSchema, { requestId: randomUUID(), addresses: [gone] }),
    );
    expect([erased.messages, erased.newsletterSends, erased.suppressions]).toEqual([1, 1, 0]);
    // No table of the schema holds the address, its name or merge field any more.
    const cols = await fx.db
      .fork()
      .getConnection()
      .execute<{ table_name: string; column_name: string }[]>(
        `select table_name, column_name from information_schema.columns where table_schema = 'operations'
         and data_type in ('text', 'character varying', 'jsonb', 'json') and table_name like 'email%'`,
      );
    for (const c of cols) {
      const [hit] = await fx.db
        .fork()
        .getConnection()
        .execute<{ n: number }[]>(
          `select count(*)::int as n from "operations"."${c.table_name}" where "${c.column_name}"::text ilike ?`,
          [`%${gone}%`],
        );
      expect({ column: `${c.table_name}.${c.column_name}`, n: hit?.n }).toEqual({
        column: `${c.table_name}.${c.column_name}`,
        n: 0,
      });
    }
    // Still blocked: an erased person is not written to again.
    expect((await email(gone)).status).toBe(EmailStatus.SUPPRESSED);
    await expect(
      exportRecipientData({ db: fx.db }, create(ExportRecipientDataRequestSchema, { addresses: [] })),
    ).rejects.toThrow(/addresses/);
  });

  it("erases the outbox copies of the person's messages and of the messages to others that name them", async () => {
    clock += 60_000;
    const dir = await mkdtemp(join(tmpdir(), "mesh-outbox-"));
    const outbox = createMailTransport({ smtpUrl: undefined, outboxDir: dir, guard: createSendGuard(fx.db) });
    try {
      const send = (to: string, subject: string) =>
        sendEmail(
          { ...smtp, transport: outbox },
          create(SendEmailRequestSchema, { requestId: randomUUID(), to: { address: to }, subject, text: subject }),
        );
      const person = "ines.outbox@example.org";
      await send(person, "Your tour on Friday");
      const invitation = create(SendEmailRequestSchema, {
        requestId: randomUUID(),
        to: { address: "host@example.org" },
        subject: "Invitation: Tour with Ines Outbox",
        text: `Attendee: ${person}`,
      });
      await sendEmail({ ...smtp, transport: outbox }, invitation);
      await send("bystander@example.org", "Unrelated news");
      const files = async () => (await readdir(dir)).filter((f) => f.endsWith(".eml"));
      expect(await files()).toHaveLength(3);
      const readAll = async () =>
        Promise.all((await files()).map((f) => readFile(join(dir, f), "utf8"))).then((t) => t.join("\n"));
      expect(await readAll()).toContain(person);

      const erased = await eraseRecipientData(
        { db: fx.db, now, outboxDir: dir },
        create(EraseRecipientDataRequestSchema, {
          requestId: randomUUID(),
          addresses: [person],
          relatedRequestIds: [invitation.requestId],
        }),
      );
      expect([erased.messages, erased.relatedMessages]).toEqual([1, 1]);
      expect(await files()).toHaveLength(1);
      expect(await readAll()).not.toContain("Ines");
      const [row] = await fx.db
        .fork()
        .getConnection()
        .execute<{ recipient: string; subject: string; outbox_file: string }[]>(
          `select recipient, subject, outbox_file from "operations"."email_message" where request_id = ?`,
          [invitation.requestId],
        );
      // The invitation stays recorded (its request id still deduplicates), without the person.
      expect(row).toEqual({ recipient: "host@example.org", subject: "", outbox_file: "" });
    } finally {
      outbox.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
