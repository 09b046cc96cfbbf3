/**
 * Consent end to end on a real operations server: the CRM's do-not-contact list reaches the Email
 * agent through `crm.consent_changed`, the one-click unsubscribe endpoint on the server's port
 * stops every later send, and export and erasure go across the agents' generated clients.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AddDoNotContactRequestSchema,
  CrmService,
  EraseContactRequestSchema,
  ExportContactDataRequestSchema,
  InteractionType,
  RemoveDoNotContactRequestSchema,
  TouchpointChannel,
  TrackInteractionRequestSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import {
  CreateNewsletterRequestSchema,
  EmailService,
  EmailStatus,
  SendEmailRequestSchema,
  SendNewsletterRequestSchema,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { eventually } from "../../../test/support/backbone.ts";
import { type Harness, startHarness } from "../../../test/support/harness.ts";
import { type SmtpSink, startSmtpSink } from "../../../test/support/smtp-sink.ts";

describe("consent across the operations server", () => {
  let h: Harness;
  let sink: SmtpSink;

  beforeAll(async () => {
    sink = await startSmtpSink();
    h = await startHarness({ servers: ["operations"], env: { MESH_SMTP_URL: sink.url } });
  }, 120_000);
  afterAll(async () => {
    await h?.close();
    await sink?.close();
  });

  const crm = () => h.client("operations", CrmService);
  const email = () => h.client("operations", EmailService);
  const send = (address: string) =>
    email().sendEmail(
      create(SendEmailRequestSchema, {
        requestId: randomUUID(),
        to: { address },
        subject: "Your tour on Friday",
        text: "See you then.",
        tag: "crm.appointment",
      }),
    );

  it("honours the CRM's do-not-contact list, exports and erases across agents", async () => {
    const address = "pat.server@example.net";
    const tracked = await crm().trackInteraction(
      create(TrackInteractionRequestSchema, {
        requestId: randomUUID(),
        interaction: {
          eventId: "srv-1",
          email: address,
          type: InteractionType.FORM_SUBMISSION,
          channel: TouchpointChannel.WEB,
          occurredAt: timestampFromDate(new Date(Date.now() - 60_000)),
        },
        contact: { givenName: "Pat", familyName: "Serverton" },
      }),
    );
    const contactId = tracked.contactId;
    expect((await send(address)).status).toBe(EmailStatus.SENT);

    await crm().addDoNotContact(
      create(AddDoNotContactRequestSchema, {
        requestId: randomUUID(),
        target: { case: "contactId", value: contactId },
      }),
    );
    const blocked = await eventually(async () => {
      const r = await send(address);
      return r.status === EmailStatus.SUPPRESSED ? r : undefined;
    }, 20_000);
    expect(blocked.suppressionReason).toBe("crm: on the do-not-contact list");
    await crm().removeDoNotContact(
      create(RemoveDoNotContactRequestSchema, {
        requestId: randomUUID(),
        target: { case: "contactId", value: contactId },
      }),
    );
    await eventually(async () => ((await send(address)).status === EmailStatus.SENT ? true : undefined), 20_000);

    const exported = await crm().exportContactData(create(ExportContactDataRequestSchema, { contactId }));
    expect(exported.contact?.email).toBe(address);
    expect(exported.email?.messages.length).toBeGreaterThanOrEqual(2);

    const erased = await crm().eraseContact(
      create(EraseContactRequestSchema, { requestId: randomUUID(), contactId, requestedBy: "ticket-1" }),
    );
    expect(erased.counts?.emailMessages).toBeGreaterThanOrEqual(2);
    expect((await send(address)).status).toBe(EmailStatus.SUPPRESSED);
  }, 90_000);

  it("an unsubscribe through the server's one-click endpoint stops every later send", async () => {
    const reader = "unsub.server@example.net";
    const created = await email().createNewsletter(
      create(CreateNewsletterRequestSchema, {
        requestId: randomUUID(),
        title: "May news",
        segmentId: "everyone",
        sender: { name: "Example", address: "news@example.com" },
        intro: "Hello.",
        sections: [{ heading: "News", body: "Our May guide." }],
        subjectVariants: [{ variantId: "A", subject: "May news" }],
        unsubscribe: { url: "https://mail.example.com/email/unsubscribe" },
        postalAddress: {
          streetLines: ["100 Congress Ave"],
          locality: "Austin",
          region: "TX",
          postalCode: "78701",
          countryCode: "US",
        },
      }),
    );
    await email().sendNewsletter(
      create(SendNewsletterRequestSchema, {
        requestId: randomUUID(),
        campaignId: created.campaignId,
        recipients: [{ address: reader }],
      }),
    );
    const raw = await eventually(
      () => sink.messages.find((m) => m.envelopeTo.includes(reader))?.raw.toString("utf8"),
      20_000,
    );
    // The public URL reaches the server's port through a proxy; the test posts to the port itself.
    const url = new URL(/List-Unsubscribe: <([^>]+)>/.exec(raw.replace(/\r\n(?=[ \t])/g, ""))?.[1] ?? "");
    expect(url.pathname).toBe("/email/unsubscribe");
    const res = await fetch(`${h.urls.operations}${url.pathname}${url.search}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "List-Unsubscribe=One-Click",
    });
    expect(res.status).toBe(200);

    const later = await send(reader);
    expect(later.status).toBe(EmailStatus.SUPPRESSED);
    expect(sink.messages.filter((m) => m.envelopeTo.includes(reader))).toHaveLength(1);
  }, 60_000);
});
