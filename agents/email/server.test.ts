/**
 * The Email agent's newsletters on a real operations server: CreateNewsletter and SendNewsletter
 * over Connect with the server's validation and idempotency, the background worker delivering to a
 * local SMTP server, the one-click unsubscribe endpoint on the server's own port, and the report.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CreateNewsletterRequestSchema,
  EmailService,
  GetNewsletterReportRequestSchema,
  SendNewsletterRequestSchema,
} from "../../gen/mesh/email/v1/email_service_pb.ts";
import { eventually } from "../../test/support/backbone.ts";
import { expectCode } from "../../test/support/expect.ts";
import { type Harness, startHarness } from "../../test/support/harness.ts";
import { type SmtpSink, startSmtpSink } from "../../test/support/smtp-sink.ts";

let h: Harness;
let sink: SmtpSink;

beforeAll(async () => {
  sink = await startSmtpSink();
  h = await startHarness({ servers: ["operations"], env: { MESH_SMTP_URL: sink.url } });
});
afterAll(async () => {
  await h?.close();
  await sink?.close();
});

const request = () =>
  create(CreateNewsletterRequestSchema, {
    requestId: randomUUID(),
    title: "Austin Senior Living News - April 2025",
    segmentId: "austin-families",
    sender: { name: "Example Senior Living", address: "news@example.com" },
    intro: "Hello {{first_name|there}}.",
    sections: [{ heading: "This month's guide", body: "Read [the guide](https://example.com/guide)." }],
    subjectVariants: [{ variantId: "A", subject: "Your April guide" }],
    unsubscribe: { url: "https://example.com/email/unsubscribe", mailto: "unsubscribe@example.com" },
    postalAddress: {
      streetLines: ["100 Congress Ave"],
      locality: "Austin",
      region: "TX",
      postalCode: "78701",
      countryCode: "US",
    },
    utmCampaign: "newsletter-2025-04",
  });

describe("newsletters on the operations server", () => {
  it("creates, sends through the background worker, unsubscribes on the server's endpoint and reports", async () => {
    const email = h.client("operations", EmailService);
    const req = request();
    const created = await email.createNewsletter(req);
    expect(await email.createNewsletter(req)).toEqual(created); // replay: the stored draft
    const send = create(SendNewsletterRequestSchema, {
      requestId: randomUUID(),
      campaignId: created.campaignId,
      recipients: [{ address: "one@example.org", fields: { first_name: "Una" } }, { address: "two@example.org" }],
    });
    expect((await email.sendNewsletter(send)).queued).toBe(2);
    expect(await email.sendNewsletter(send)).toMatchObject({ queued: 2 }); // replay answers the first call
    const again = await email.sendNewsletter(create(SendNewsletterRequestSchema, { ...send, requestId: randomUUID() }));
    expect([again.queued, again.duplicates]).toEqual([0, 2]);
    await eventually(() => (sink.messages.length >= 2 ? true : undefined), 30_000);
    const one = sink.messages.find((m) => m.envelopeTo[0] === "one@example.org");
    expect(one?.parsed.text).toContain("Hello Una.");
    const raw = one?.raw.toString("utf8").replace(/\r\n(?=[ \t])/g, "") ?? "";
    const published = new URL(/List-Unsubscribe: <([^>]+)>/.exec(raw)?.[1] ?? "");
    // The public URL is a reverse proxy's; the operations server answers the same path.
    const local = new URL(`${published.pathname}${published.search}`, h.urls.operations);
    const res = await fetch(local, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "List-Unsubscribe=One-Click",
    });
    expect(res.status).toBe(200);
    const report = await email.getNewsletterReport(
      create(GetNewsletterReportRequestSchema, { campaignId: created.campaignId }),
    );
    expect([report.recipients, report.sent, report.unsubscribed]).toEqual([2n, 2n, 1n]);
    // A later campaign skips the unsubscribed address.
    const next = await email.createNewsletter(request());
    const r2 = await email.sendNewsletter(
      create(SendNewsletterRequestSchema, {
        requestId: randomUUID(),
        campaignId: next.campaignId,
        recipients: [{ address: "one@example.org" }],
      }),
    );
    expect([r2.queued, r2.suppressed]).toEqual([0, 1]);
  });

  it("answers bad input with INVALID_ARGUMENT naming the field", async () => {
    const email = h.client("operations", EmailService);
    const bad = request();
    bad.unsubscribe = { $typeName: "mesh.email.v1.UnsubscribeConfig", url: "http://example.com/u", mailto: "" };
    await expectCode(email.createNewsletter(bad), Code.InvalidArgument, /unsubscribe\.url/);
  });
});
