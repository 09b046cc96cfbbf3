/**
 * Follow-ups on a running operations server: an enquiry tracked by the CRM makes a contact; the
 * Email agent enrols it (resolving it through the CRM's GetContact over the mesh), its background
 * scheduler sends the first step through SendEmail into a real SMTP server, and a reply recorded
 * over RPC stops the sequence. Replays and bad input through the server's interceptors.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CrmService,
  InteractionType,
  TouchpointChannel,
  TrackInteractionRequestSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import {
  EmailService,
  EnrollmentState,
  FollowUpChannel,
  FollowUpEngagementKind,
  RecordFollowUpEngagementRequestSchema,
  RunFollowUpSequenceRequestSchema,
  StopCondition,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { eventually } from "../../../test/support/backbone.ts";
import { expectCode } from "../../../test/support/expect.ts";
import { type Harness, startHarness } from "../../../test/support/harness.ts";
import { type SmtpSink, startSmtpSink } from "../../../test/support/smtp-sink.ts";

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

describe("follow-up sequences on the operations server", () => {
  it("enquiry → contact → enrolment → first email; a reply stops the next step", async () => {
    const crm = h.client("operations", CrmService);
    const email = h.client("operations", EmailService);
    const tracked = await crm.trackInteraction(
      create(TrackInteractionRequestSchema, {
        requestId: randomUUID(),
        interaction: {
          eventId: `enq-${randomUUID()}`,
          email: "family@example.org",
          type: InteractionType.ENQUIRY,
          channel: TouchpointChannel.WEB,
          occurredAt: timestampFromDate(new Date()),
        },
        contact: {
          givenName: "Mary",
          familyName: "Jones",
          email: "family@example.org",
          city: "Austin",
          region: "TX",
          attributes: [{ key: "time_zone", value: { kind: { case: "stringValue", value: "America/Chicago" } } }],
        },
      }),
    );
    expect(tracked.contactId).not.toBe("");

    const req = create(RunFollowUpSequenceRequestSchema, {
      requestId: randomUUID(),
      cadence: {
        sequenceId: "austin-enquiry",
        name: "Austin enquiry",
        steps: [
          { delay: durationFromMs(0), channel: FollowUpChannel.EMAIL, templateId: "thanks" },
          { delay: durationFromMs(86_400_000), channel: FollowUpChannel.EMAIL, templateId: "reminder" },
        ],
        stopConditions: [StopCondition.REPLIED],
        timeZone: "America/New_York",
        useContactTimeZone: true,
        templates: [
          { templateId: "thanks", subject: "Thanks, {{given_name}}", text: "We will call you about {{city}}." },
          { templateId: "reminder", subject: "Any questions?", text: "Reply any time." },
        ],
      },
      contactIds: [tracked.contactId, randomUUID()],
    });
    const res = await email.runFollowUpSequence(req);
    expect(res.enrollments.map((e) => e.state)).toEqual([EnrollmentState.ACTIVE, EnrollmentState.NOT_FOUND]);
    expect(res.enrollments[0]?.timeZone).toBe("America/Chicago"); // the contact's own zone
    expect(await email.runFollowUpSequence(req)).toEqual(res); // replay: the stored answer

    const mail = await eventually(() => sink.messages.find((m) => m.envelopeTo.includes("family@example.org")), 30_000);
    expect(mail.parsed.subject).toBe("Thanks, Mary");
    expect(mail.parsed.text).toContain("about Austin");

    // The scheduler records the Message-ID just after the SMTP server accepted the message: a reply
    // naming it matches from then on (until then it is reported unmatched and changes nothing).
    const reply = await eventually(async () => {
      const r = await email.recordFollowUpEngagement(
        create(RecordFollowUpEngagementRequestSchema, {
          requestId: randomUUID(),
          events: [{ messageId: mail.parsed.messageId ?? "", kind: FollowUpEngagementKind.REPLY }],
        }),
      );
      return r.unmatched === 0 ? r : undefined;
    });
    expect(reply.stoppedEnrollments).toBe(1);
  });

  it("refuses bad input with INVALID_ARGUMENT naming the field", async () => {
    const email = h.client("operations", EmailService);
    await expectCode(
      email.runFollowUpSequence(
        create(RunFollowUpSequenceRequestSchema, {
          requestId: randomUUID(),
          cadence: {
            sequenceId: "bad",
            steps: [{ delay: durationFromMs(0), channel: FollowUpChannel.CALL_TASK, templateId: "script" }],
            timeZone: "Nowhere/Atlantis",
          },
          contactIds: [randomUUID()],
        }),
      ),
      Code.InvalidArgument,
      /cadence\.time_zone/,
    );
    await expectCode(
      email.recordFollowUpEngagement(
        create(RecordFollowUpEngagementRequestSchema, {
          requestId: randomUUID(),
          events: [{ kind: FollowUpEngagementKind.OPEN }],
        }),
      ),
      Code.InvalidArgument,
      /message_id or contact_id/,
    );
  });
});
