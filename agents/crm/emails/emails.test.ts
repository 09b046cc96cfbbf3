/**
 * Emails on the contact timeline, end to end on PostgreSQL and NATS: the Email agent's SendEmail
 * records a message and enqueues `MessageSent` in one transaction, the outbox relay publishes it,
 * and the CRM's durable consumer keeps its copy, which the timeline, export and erasure see.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, createRegistry } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  EraseContactRequestSchema,
  ExportContactDataRequestSchema,
  GetContactTimelineRequestSchema,
  InteractionType,
  type TimelineEntry,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { EmailMessageKind, MessageSentSchema } from "../../../gen/mesh/email/v1/email_events_pb.ts";
import {
  EmailStatus,
  EraseRecipientDataResponseSchema,
  ExportRecipientDataResponseSchema,
  SendEmailRequestSchema,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import type { Running } from "../../../lib/bus/index.ts";
import type { Database } from "../../../lib/db/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { createCatalog, withDependencies } from "../../../lib/registry/index.ts";
import type { MeshClient } from "../../../lib/transport/index.ts";
import { domains } from "../../../servers/domains.ts";
import { type BackboneFixture, eventually, openBackboneFixture } from "../../../test/support/backbone.ts";
import { createMailTransport, type MailTransport } from "../../email/delivery.ts";
import { messageSentId } from "../../email/events.ts";
import { sendEmail } from "../../email/skills/send-email.ts";
import { getContactTimeline } from "../contacts/read.ts";
import { CrmContact, CrmInteraction } from "../entities.ts";
import { eraseContact, exportContactData } from "../privacy/privacy.ts";
import { EMAIL_COPY_CONSUMER, EmailMessageSent, startEmailCopyConsumer } from "./consumer.ts";
import { CrmEmailMessage } from "./entities.ts";
import { storeSentMessage } from "./store.ts";

const log = createLogger("error");
const start = Date.parse("2025-02-03T09:00:00Z");
let clock = start;
const now = (): Date => new Date(clock);
const minute = 60_000;
const at = (m: number) => new Date(start + m * minute);

/** The Email agent as the CRM's privacy API calls it: it holds nothing of interest here. */
const quietEmail = {
  agent: () => ({
    exportRecipientData: async () => create(ExportRecipientDataResponseSchema, {}),
    eraseRecipientData: async () => create(EraseRecipientDataResponseSchema, {}),
  }),
} as unknown as MeshClient;

const kindName = Object.fromEntries(Object.entries(EmailMessageKind).map(([k, v]) => [v, k])) as Record<number, string>;
const statusName = Object.fromEntries(Object.entries(EmailStatus).map(([k, v]) => [v, k])) as Record<number, string>;

function describeEntry(e: TimelineEntry): [number, string] {
  const minutes = (timestampDate(e.occurredAt ?? timestampFromDate(new Date(0))).getTime() - start) / minute;
  const i = e.item;
  switch (i.case) {
    case "interaction":
      return [minutes, `interaction ${i.value.url}`];
    case "email":
      return [minutes, `email ${i.value.subject} ${kindName[i.value.kind]} ${statusName[i.value.status]}`];
    default:
      return [minutes, i.case ?? "?"];
  }
}

it("resolves MessageSent through the servers' type registry (JSON and reflection of Any)", () => {
  // The servers' registry is every service file with its imports: the CRM's EmailMessageRecord
  // imports email_events.proto, so the event resolves wherever the catalog does.
  const registry = createRegistry(...withDependencies(...createCatalog().files));
  expect(registry.getMessage("mesh.email.v1.MessageSent")?.typeName).toBe("mesh.email.v1.MessageSent");
});

describe("emails sent to a contact, from the Email agent's events to the CRM timeline", () => {
  let fx: BackboneFixture;
  let db: Database;
  let consumer: Running;
  let transport: MailTransport;
  let outboxDir: string;
  const contactId = randomUUID();
  const email = "erin.email@example.com";
  const mergedId = randomUUID();
  const mergedEmail = "erin.old@example.com";
  const followUpContact = randomUUID();

  async function send(to: string, subject: string, requestId = randomUUID()) {
    return sendEmail(
      { db, bus: fx.bus, now, log, transport, defaultFrom: { name: "Mesh", address: "noreply@mesh.test" } },
      create(SendEmailRequestSchema, {
        requestId,
        to: { address: to },
        subject,
        text: `Hello (${subject})`,
        tag: "test.mail",
      }),
    );
  }

  /** Waits until the CRM's consumer has processed the event of `messageId` (its inbox row exists). */
  async function processed(msgId: string): Promise<void> {
    await eventually(async () => {
      const rows = await db
        .fork()
        .execute(`select 1 from "${db.schema}"."inbox" where consumer = ? and msg_id = ?`, [
          EMAIL_COPY_CONSUMER,
          msgId,
        ]);
      return rows.length > 0 ? true : undefined;
    });
  }

  async function timeline(id: string, pageSize = 50): Promise<Array<[number, string]>> {
    const out: Array<[number, string]> = [];
    let pageToken = "";
    for (let i = 0; i < 20; i++) {
      const r = await getContactTimeline(
        { db },
        create(GetContactTimelineRequestSchema, { contactId: id, pageSize, pageToken }),
      );
      out.push(...r.entries.map(describeEntry));
      pageToken = r.nextPageToken;
      if (pageToken === "") return out;
    }
    throw new Error("the timeline did not end");
  }

  beforeAll(async () => {
    fx = await openBackboneFixture(domains.operations, "crm-emails");
    db = fx.db;
    outboxDir = mkdtempSync(join(tmpdir(), "crm-emails-"));
    transport = createMailTransport({ smtpUrl: undefined, outboxDir });
    const em = db.fork();
    for (const [id, address, mergedInto] of [
      [contactId, email, null],
      [mergedId, mergedEmail, contactId],
      [followUpContact, "fran.followup@example.com", null],
    ] as const) {
      em.create(CrmContact, {
        id,
        email: address,
        givenName: "Erin",
        familyName: "Email",
        attributes: [],
        mergedInto,
        createdAt: at(0),
        updatedAt: at(0),
      });
    }
    await em.flush();
    em.create(CrmInteraction, {
      id: randomUUID(),
      eventId: "emails-visit",
      contact: contactId,
      type: InteractionType.PAGE_VIEW,
      url: "https://example.com/pricing",
      occurredAt: at(5),
      properties: [],
      recordedAt: at(5),
    });
    await em.flush();
    consumer = await startEmailCopyConsumer({ db, bus: fx.bus, now, log });
  });
  afterAll(async () => {
    await consumer?.stop();
    await fx?.dispose();
    if (outboxDir) rmSync(outboxDir, { recursive: true, force: true });
  });

  it("puts a message sent with SendEmail on the recipient's timeline, in time order with the other sources", async () => {
    clock = at(10).getTime();
    const sent = await send(email.toUpperCase(), "Welcome aboard");
    expect(sent.status).toBe(EmailStatus.WRITTEN_TO_OUTBOX);
    await processed(messageSentId(sent.messageId));
    expect(await timeline(contactId)).toEqual([
      [10, "email Welcome aboard SINGLE WRITTEN_TO_OUTBOX"],
      [5, "interaction https://example.com/pricing"],
    ]);
    const row = await db.fork().findOneOrFail(CrmEmailMessage, { messageId: sent.messageId });
    expect(row).toMatchObject({ contactId, recipient: email, tag: "test.mail", kind: EmailMessageKind.SINGLE });
  });

  it("stores a redelivered or republished event once", async () => {
    clock = at(20).getTime();
    const sent = await send(email, "Your invoice");
    const msgId = messageSentId(sent.messageId);
    await processed(msgId);
    const event = create(MessageSentSchema, {
      messageId: sent.messageId,
      recipient: email,
      subject: "Your invoice",
      kind: EmailMessageKind.SINGLE,
      sentAt: timestampFromDate(at(20)),
      status: EmailStatus.SENT,
    });
    // The same event under another bus message id passes the inbox; the Message-ID keeps one row.
    const again = randomUUID();
    await fx.bus.publishEvent(EmailMessageSent, event, { msgId: again });
    await processed(again);
    expect(await db.fork().count(CrmEmailMessage, { messageId: sent.messageId })).toBe(1);
    // And in the consumer's own terms: a second store is a duplicate.
    await db.transaction(async (em) => {
      expect(await storeSentMessage(db, em, event, now())).toEqual({ stored: false, reason: "duplicate" });
    });
    expect((await timeline(contactId)).filter(([, w]) => w.startsWith("email Your invoice"))).toHaveLength(1);
  });

  it("skips a recipient the CRM does not know", async () => {
    clock = at(25).getTime();
    const sent = await send("stranger@example.net", "Hello stranger");
    await processed(messageSentId(sent.messageId));
    expect(await db.fork().count(CrmEmailMessage, { messageId: sent.messageId })).toBe(0);
    await db.transaction(async (em) => {
      const e = create(MessageSentSchema, {
        messageId: "<x@mesh.test>",
        recipient: "nobody@example.net",
        contactId: randomUUID(),
        sentAt: timestampFromDate(at(25)),
      });
      expect(await storeSentMessage(db, em, e, now())).toEqual({ stored: false, reason: "unknown_recipient" });
    });
  });

  it("attributes a follow-up step to the enrolled contact, with its sequence and step", async () => {
    clock = at(30).getTime();
    // The sequence scheduler's rows (agents/email/sequences) that SendEmail finds by request id.
    const enrollment = randomUUID();
    const requestId = randomUUID();
    await db.fork().execute(
      `insert into "${db.schema}"."email_follow_up_enrollment" (id, sequence_id, contact_id, address, recipient, fields, time_zone, state, enrolled_at, created_at, updated_at)
       values (?, 'onboarding', ?, 'fran.other@example.com', 'fran.other@example.com', '{}', 'UTC', 'active', ?, ?, ?)`,
      [enrollment, followUpContact, at(30), at(30), at(30)],
    );
    await db.fork().execute(
      `insert into "${db.schema}"."email_follow_up_send" (id, enrollment_id, step_index, channel, template_id, due_at, status, request_id, created_at, updated_at)
       values (?, ?, 2, 1, 't3', ?, 'sending', ?, ?, ?)`,
      [randomUUID(), enrollment, at(30), requestId, at(30), at(30)],
    );
    // Sent to an address the CRM does not hold: the contact id decides.
    const sent = await send("fran.other@example.com", "Checking in", requestId);
    await processed(messageSentId(sent.messageId));
    const row = await db.fork().findOneOrFail(CrmEmailMessage, { messageId: sent.messageId });
    expect(row).toMatchObject({
      contactId: followUpContact,
      kind: EmailMessageKind.FOLLOW_UP,
      sequenceId: "onboarding",
      stepIndex: 2,
    });
    expect(await timeline(followUpContact)).toEqual([[30, "email Checking in FOLLOW_UP WRITTEN_TO_OUTBOX"]]);
  });

  it("attributes mail to a merged duplicate to its survivor, and shows the duplicate's earlier mail there too", async () => {
    // Stored for the duplicate before it was merged (as if the merge came later).
    await db.transaction(async (em) => {
      await em.getConnection().execute(
        `insert into "${db.schema}"."crm_email_message" (id, message_id, contact_id, recipient, subject, kind, status, sent_at, recorded_at)
         values (?, '<before-merge@mesh.test>', ?, ?, 'Old news', 1, 1, ?, ?)`,
        [randomUUID(), mergedId, mergedEmail, at(1), at(1)],
        "run",
        em.getTransactionContext(),
      );
    });
    clock = at(40).getTime();
    const sent = await send(mergedEmail, "To the old address");
    await processed(messageSentId(sent.messageId));
    const row = await db.fork().findOneOrFail(CrmEmailMessage, { messageId: sent.messageId });
    expect(row.contactId).toBe(contactId);
    const all = await timeline(contactId);
    expect(all.map(([m, w]) => `${m} ${w}`)).toEqual([
      "40 email To the old address SINGLE WRITTEN_TO_OUTBOX",
      "20 email Your invoice SINGLE WRITTEN_TO_OUTBOX",
      "10 email Welcome aboard SINGLE WRITTEN_TO_OUTBOX",
      "5 interaction https://example.com/pricing",
      "1 email Old news SINGLE SENT",
    ]);
    // Paged one entry at a time, the same entries in the same order.
    expect(await timeline(contactId, 1)).toEqual(all);
    expect(await timeline(contactId, 2)).toEqual(all);
  });

  it("exports the contact's emails and erases them", async () => {
    const exported = await exportContactData(
      { db, client: quietEmail, now },
      create(ExportContactDataRequestSchema, { contactId }),
    );
    expect(exported.emailMessages.map((m) => m.subject)).toEqual([
      "Old news",
      "Welcome aboard",
      "Your invoice",
      "To the old address",
    ]);
    expect(exported.emailMessages[0]?.contactId).toBe(mergedId);
    await eraseContact(
      { db, bus: fx.bus, client: quietEmail, now, log },
      create(EraseContactRequestSchema, { requestId: randomUUID(), contactId, requestedBy: "test" }),
    );
    expect(await db.fork().count(CrmEmailMessage, { contactId: { $in: [contactId, mergedId] } })).toBe(0);
    expect((await timeline(contactId)).filter(([, w]) => w.startsWith("email"))).toEqual([]);
    // A late announcement for the erased contact stores nothing.
    await db.transaction(async (em) => {
      const e = create(MessageSentSchema, {
        messageId: "<late@mesh.test>",
        contactId,
        recipient: email,
        sentAt: timestampFromDate(at(50)),
      });
      expect(await storeSentMessage(db, em, e, now())).toEqual({ stored: false, reason: "erased" });
    });
  });
});
