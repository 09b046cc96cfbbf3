/**
 * The directory's visitor loop, end to end and driven by events alone: in headless Chromium a
 * visitor sends the enquiry form of a generated city page (technical server); the CRM records the
 * enquiry and makes the contact (operations); event consumers score it with the market's weights,
 * put it in the market's segment, and enrol it in that market's follow-up cadence (Email agent);
 * the follow-up scheduler sends the first step through SendEmail into a real SMTP server. The
 * test configures through public RPCs only, makes no call between the form post and the email,
 * then checks the CRM's read RPCs and that the chain is one trace across the servers.
 */
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BooleanOperator,
  ComparisonOperator,
  ContactField,
  CrmService,
  InteractionType,
} from "../gen/mesh/crm/v1/crm_service_pb.ts";
import { DirectoryService } from "../gen/mesh/directory/v1/directory_service_pb.ts";
import {
  EmailService,
  EmailStatus,
  FollowUpChannel,
  StopCondition,
  Weekday,
} from "../gen/mesh/email/v1/email_service_pb.ts";
import { eventually } from "./support/backbone.ts";
import { type Harness, startHarness } from "./support/harness.ts";
import type { ReceivedSpan } from "./support/otlp-receiver.ts";
import { type SmtpSink, startSmtpSink } from "./support/smtp-sink.ts";

const chromiumPath = "/usr/bin/chromium";
const DAY = 86_400_000;
/** OTLP span kinds. */
const SERVER = 2;
const CONSUMER = 5;
const kindName: Record<number, string> = { 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer" };

/** The Austin market's cadence: one email at once, any hour of any day (no quiet hours in the way). */
const austinCadence = {
  sequenceId: "austin-enquiry-follow-up",
  name: "Austin enquirers: first follow-up",
  segmentKey: "austin-enquirers",
  marketRegion: "TX",
  marketCity: "Austin",
  steps: [
    { delay: durationFromMs(0), channel: FollowUpChannel.EMAIL, templateId: "welcome" },
    { delay: durationFromMs(3 * DAY), channel: FollowUpChannel.EMAIL, templateId: "visit" },
  ],
  stopConditions: [StopCondition.REPLIED],
  timeZone: "America/Chicago",
  sendingWindow: {
    days: [
      Weekday.MONDAY,
      Weekday.TUESDAY,
      Weekday.WEDNESDAY,
      Weekday.THURSDAY,
      Weekday.FRIDAY,
      Weekday.SATURDAY,
      Weekday.SUNDAY,
    ],
    startTime: "00:00",
    endTime: "24:00",
  },
  templates: [
    {
      templateId: "welcome",
      subject: "Your enquiry about senior living in {{city}}, {{given_name}}",
      text: "Hello {{given_name}},\n\nthank you for asking about communities in {{city}}, {{region}}. A local advisor will call you.",
    },
    { templateId: "visit", subject: "Would you like to visit?", text: "We can arrange a tour." },
  ],
  unsubscribe: { url: "https://example.com/email/unsubscribe" },
};

/** The national cadence of the same segment: the consumer must prefer the city's. */
const defaultCadence = {
  ...austinCadence,
  sequenceId: "enquirers-default-follow-up",
  name: "Enquirers anywhere",
  marketRegion: "",
  marketCity: "",
  templates: [
    { templateId: "welcome", subject: "Thanks for your enquiry", text: "Hello." },
    { templateId: "visit", subject: "Would you like to visit?", text: "We can arrange a tour." },
  ],
};

describe.skipIf(!existsSync(chromiumPath))("the directory's visitor loop in headless Chromium", () => {
  const siteDir = join(mkdtempSync(join(tmpdir(), "mesh-loop-site-")), "site");
  let sink: SmtpSink;
  let h: Harness;
  let browser: Browser;
  let base = "";

  beforeAll(async () => {
    sink = await startSmtpSink();
    // One server at a time: each gets the harness's whole start-up allowance on a busy machine.
    h = await startHarness({ servers: [], env: { MESH_SITE_DIR: siteDir, MESH_SMTP_URL: sink.url } });
    for (const server of ["operations", "technical", "content"] as const) await h.start(server);
    base = h.urls.technical;
    try {
      for await (const _ of h
        .client("technical", DirectoryService)
        .buildSite({ origin: base }, { timeoutMs: 120_000 })) {
        // progress is checked by directory.test.ts
      }
    } catch (err) {
      throw new Error(`BuildSite failed: ${String(err)}\n${h.logs.technical}`);
    }
    browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });
  }, 300_000);
  afterAll(async () => {
    await browser?.close();
    await h?.close();
    await sink?.close();
    rmSync(join(siteDir, ".."), { recursive: true, force: true });
  });

  it("enquiry on the Austin page → contact → market score → market segment → the market's first email, in one trace", async () => {
    const crm = h.client("operations", CrmService);
    const email = h.client("operations", EmailService);

    // 1. Configuration, through the public RPCs only.
    const scoring = await crm.saveScoringModel({
      requestId: randomUUID(),
      model: {
        fitRules: [
          {
            id: "texas",
            condition: {
              node: {
                case: "field",
                value: {
                  field: { ref: { case: "contactField", value: ContactField.REGION } },
                  comparison: ComparisonOperator.EQUALS,
                  values: [{ kind: { case: "stringValue", value: "TX" } }],
                },
              },
            },
            points: 10,
          },
        ],
        behaviourRules: [
          { id: "enquiry", interactionType: InteractionType.ENQUIRY, points: 40, halfLife: durationFromMs(30 * DAY) },
        ],
        mqlThreshold: 40,
        sqlThreshold: 70,
      },
      marketWeighting: { enabled: true },
    });
    expect(scoring.version).toBeGreaterThan(0n);

    const segment = await crm.saveSegment({
      requestId: randomUUID(),
      segment: {
        key: "austin-enquirers",
        name: "Enquirers in Austin (last 30 days)",
        condition: {
          node: {
            case: "group",
            value: {
              booleanOperator: BooleanOperator.AND,
              conditions: [
                {
                  node: {
                    case: "field",
                    value: {
                      field: { ref: { case: "contactField", value: ContactField.CITY } },
                      comparison: ComparisonOperator.EQUALS,
                      values: [{ kind: { case: "stringValue", value: "Austin" } }],
                    },
                  },
                },
                {
                  node: {
                    case: "behaviour",
                    value: { interactionType: InteractionType.ENQUIRY, minCount: 1, within: durationFromMs(30 * DAY) },
                  },
                },
              ],
            },
          },
        },
      },
    });
    expect(segment.segment?.memberCount).toBe(0n);

    // RunFollowUpSequence with no contacts stores the market's cadence and enrols nobody: the
    // segment's joiners are enrolled by the Email agent's consumer.
    for (const cadence of [defaultCadence, austinCadence]) {
      const registered = await email.runFollowUpSequence({ requestId: randomUUID(), cadence });
      expect(registered.revision).toBe(1);
      expect(registered.enrollments).toEqual([]);
    }
    const spansBefore = h.otlp.spans.length;

    // 2. A visitor sends the enquiry form of the generated Austin page.
    const visitor = "june.park@example.com";
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(`${base}/tx/austin-tx/`);
      expect(await page.locator("h1").textContent()).toBe("Senior living in Austin, TX");
      await page.getByLabel("Your name").fill("June Park");
      await page.getByLabel("Email").fill("June.Park@Example.com");
      await page.getByLabel("Phone (optional)").fill("(512) 555-0123");
      await page.getByLabel("Question (optional)").fill("Do you have memory care near Zilker?");
      await page.getByRole("button", { name: "Send enquiry" }).click();
      await page.waitForURL(`${base}/enquiry/thanks/?city=austin-tx`);
      expect(await page.locator("h1").textContent()).toBe("Thank you");
    } finally {
      await context.close();
    }

    // 3. No call in between: the market's first follow-up arrives at the SMTP server.
    const mail = await eventually(() => sink.messages.find((m) => m.envelopeTo.includes(visitor)), 60_000).catch(
      (err: unknown) => {
        throw new Error(`no follow-up email: ${String(err)}\n--- operations log ---\n${h.logs.operations}`);
      },
    );
    expect(mail.envelopeTo).toEqual([visitor]);
    expect(mail.parsed.subject).toBe("Your enquiry about senior living in Austin, June");
    expect(mail.parsed.to && !Array.isArray(mail.parsed.to) ? mail.parsed.to.value[0]?.address : "").toBe(visitor);
    expect(mail.parsed.text).toContain("communities in Austin, TX");
    expect(mail.parsed.messageId).toMatch(/^<.+@.+>$/);
    expect(mail.parsed.date).toBeInstanceOf(Date);
    expect(mail.parsed.headers.get("mime-version")).toBe("1.0");
    // Exactly one message for the visitor: the city's cadence, not the national one as well.
    expect(sink.messages.filter((m) => m.envelopeTo.includes(visitor))).toHaveLength(1);
    // RFC 8058 one-click unsubscribe, the token signed for this step.
    const raw = mail.raw.toString("utf8").replace(/\r\n(?=[ \t])/g, "");
    expect(raw).toMatch(/^List-Unsubscribe-Post: List-Unsubscribe=One-Click$/m);
    const unsubscribeUrl = new URL(/^List-Unsubscribe: <([^>]+)>/m.exec(raw)?.[1] ?? "https://invalid");
    expect(unsubscribeUrl.searchParams.get("token")).toMatch(/^f[0-9a-f]{32}\./);

    // 4. What the CRM now says, through its read RPCs.
    const listed = await crm.listContacts({ city: "Austin", region: "TX", pageSize: 50 });
    const contact = listed.contacts.find((c) => c.email === visitor);
    expect(contact).toBeDefined();
    const contactId = contact?.id ?? "";
    const got = await crm.getContact({ contactId });
    expect(got.contact).toMatchObject({
      id: contactId,
      givenName: "June",
      familyName: "Park",
      email: visitor,
      city: "Austin",
      region: "TX",
    });
    const score = await eventually(() =>
      crm.getLeadScore({ contactId }).then(
        (r) => r.leadScore,
        () => undefined,
      ),
    );
    expect(score.score?.market).toBe("austin|tx");
    expect(score.modelVersion).toBe(scoring.version);
    expect(score.score?.totalScore).toBeGreaterThan(0);
    const members = await crm.listSegmentMembers({ key: "austin-enquirers", pageSize: 50 });
    expect(members.members.map((m) => m.contactId)).toEqual([contactId]);

    // 5. One trace from the enquiry to the send, across the servers: from the SendEmail span up
    // through the parents to the root, every hop — the directory's call (technical), the CRM
    // (operations), the outbox and JetStream consumers, the scheduled step — is in it.
    const fresh = () => h.otlp.spans.slice(spansBefore);
    const byId = () => new Map(fresh().map((s) => [s.spanId, s]));
    const isSend = (s: ReceivedSpan) => s.name === "mesh.email.v1.EmailService/SendEmail" && s.kind === SERVER;
    /** The send span's ancestry, root first; undefined until every ancestor has been exported. */
    const ancestry = (): ReceivedSpan[] | undefined => {
      const spans = byId();
      let at = fresh().find(isSend);
      const path: ReceivedSpan[] = [];
      while (at !== undefined) {
        path.unshift(at);
        if (at.parentSpanId === "") return path;
        at = spans.get(at.parentSpanId);
      }
      return undefined;
    };
    await h.otlp
      .waitFor(() => ancestry() !== undefined, 30_000)
      .catch(() => {
        throw new Error(
          `broken trace:\n${fresh()
            .map((s) => `${s.traceId} ${s.spanId}<${s.parentSpanId} ${s.service} ${s.name}`)
            .join("\n")}`,
        );
      });
    const path = ancestry() ?? [];
    const hops = path.map(
      (s) => `${s.service} ${kindName[s.kind] ?? s.kind} ${s.name.replace(`${h.natsPrefix}.`, "")}`,
    );
    expect(new Set(path.map((s) => s.traceId)).size).toBe(1);
    // The root is the directory's enquiry handler calling the CRM; the end is the send.
    expect(hops.slice(0, 3)).toEqual([
      "mesh-technical client mesh.crm.v1.CrmService/TrackInteraction",
      "mesh-operations server mesh.crm.v1.CrmService/TrackInteraction",
      "mesh-operations producer send events.crm.interaction_tracked",
    ]);
    expect(hops.slice(-5)).toEqual([
      "mesh-operations producer send events.crm.segment_membership_changed",
      "mesh-operations consumer process events.crm.segment_membership_changed",
      "mesh-operations internal email.follow_up.step",
      "mesh-operations client mesh.email.v1.EmailService/SendEmail",
      "mesh-operations server mesh.email.v1.EmailService/SendEmail",
    ]);
    // In between, a CRM consumer re-evaluated the segments: on the interaction itself, or on the
    // lead score the scoring consumer stored from it (whichever committed the join first).
    const middle = hops.slice(3, -5);
    expect([
      ["mesh-operations consumer process events.crm.interaction_tracked"],
      [
        "mesh-operations consumer process events.crm.interaction_tracked",
        "mesh-operations producer send events.crm.lead_score_changed",
        "mesh-operations consumer process events.crm.lead_score_changed",
      ],
    ]).toContainEqual(middle);
    const consumerOf = (name: string) =>
      path.find((s) => s.name.endsWith(name) && s.kind === CONSUMER)?.attributes["messaging.consumer.group.name"];
    expect(consumerOf("segment_membership_changed")).toBe("email_follow_up_segments");
    expect(["crm_segments_interactions", "crm_segments_lead_scores"]).toContain(
      path.at(-6)?.attributes["messaging.consumer.group.name"],
    );
    expect(path.find((s) => s.name === "email.follow_up.step")?.attributes["mesh.email.sequence_id"]).toBe(
      "austin-enquiry-follow-up",
    );
    // The trace spans the technical and operations servers. The content server is running but not
    // on this path (no Writing agent yet), so it has no span in it.
    const trace = fresh().filter((s) => s.traceId === path[0]?.traceId);
    expect([...new Set(trace.map((s) => s.service))].sort()).toEqual(["mesh-operations", "mesh-technical"]);

    // 6. The visitor unsubscribes with the link's one-click POST on the operations server: nothing
    // more is sent to them, whatever sends it.
    const posted = await fetch(`${h.urls.operations}${unsubscribeUrl.pathname}${unsubscribeUrl.search}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "List-Unsubscribe=One-Click",
    });
    expect(posted.status).toBe(200);
    const after = await h
      .client("operations", EmailService)
      .sendEmail({ requestId: randomUUID(), to: { address: visitor }, subject: "One more thing", text: "Hello." });
    expect(after.status).toBe(EmailStatus.SUPPRESSED);
  }, 240_000);
});
