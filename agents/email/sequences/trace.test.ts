/**
 * The scheduler sends a first step in the trace that enrolled it: the enrolment stores the active
 * trace context on the step row, and the worker, which finds the row later from its poll loop,
 * delivers it in an `email.follow_up.step` span continuing that trace (so SendEmail and the SMTP
 * send join the CRM event's trace). Later steps, days apart, and enrolments made outside any trace
 * start their own.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type SpanContext, trace } from "@opentelemetry/api";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  EmailStatus,
  FollowUpChannel,
  type SendEmailRequest,
  SendEmailResponseSchema,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { type Database, openDatabase } from "../../../lib/db/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { setupTelemetry, type Telemetry } from "../../../lib/telemetry/index.ts";
import { domains } from "../../../servers/domains.ts";
import { isolatedDatabase } from "../../../test/support/backbone.ts";
import { seededUniform } from "../send-time/thompson.ts";
import { runFollowUpSequence } from "../skills/run-follow-up-sequence.ts";
import type { FollowUpContact } from "./contacts.ts";
import { createFollowUpWorker } from "./worker.ts";

const log = createLogger("error");
const DAY = 86_400_000;

describe("follow-up steps keep the trace that enrolled them", () => {
  let telemetry: Telemetry;
  let dbHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let db: Database;
  let clock = new Date("2025-06-02T15:00:00Z");
  const now = () => clock;
  const contacts = new Map<string, FollowUpContact>();
  for (const name of ["traced", "untraced"]) {
    const id = randomUUID();
    contacts.set(id, {
      contactId: id,
      email: `${name}@example.org`,
      name,
      givenName: name,
      familyName: "",
      city: "Austin",
      region: "TX",
      company: "",
      timeZone: "",
    });
  }
  const [traced, untraced] = [...contacts.keys()] as [string, string];
  /** The active span when SendEmail was called, per recipient and subject. */
  const sends: { to: string; subject: string; active: SpanContext | undefined }[] = [];
  const worker = () =>
    createFollowUpWorker({
      db,
      log,
      now,
      nodeId: "w",
      random: seededUniform(1),
      key: async () => Buffer.alloc(32, 1),
      send: async (req: SendEmailRequest) => {
        sends.push({ to: req.to?.address ?? "", subject: req.subject, active: trace.getActiveSpan()?.spanContext() });
        return create(SendEmailResponseSchema, {
          status: EmailStatus.SENT,
          messageId: `<${randomUUID()}@example.org>`,
        });
      },
    });
  const enrol = (contactId: string) =>
    runFollowUpSequence(
      { db, now, lookup: async (id) => contacts.get(id), random: seededUniform(2) },
      {
        $typeName: "mesh.email.v1.RunFollowUpSequenceRequest",
        requestId: randomUUID(),
        contactIds: [contactId],
        allowReenrollment: false,
        cadence: {
          $typeName: "mesh.email.v1.FollowUpCadence",
          sequenceId: "traced-follow-up",
          name: "",
          steps: [
            {
              $typeName: "mesh.email.v1.CadenceStep",
              delay: durationFromMs(0),
              channel: FollowUpChannel.EMAIL,
              templateId: "first",
            },
            {
              $typeName: "mesh.email.v1.CadenceStep",
              delay: durationFromMs(2 * DAY),
              channel: FollowUpChannel.EMAIL,
              templateId: "second",
            },
          ],
          stopConditions: [],
          timeZone: "America/Chicago",
          useContactTimeZone: false,
          dailySendLimit: 0,
          templates: [
            { $typeName: "mesh.email.v1.FollowUpTemplate", templateId: "first", subject: "First", text: "1", html: "" },
            {
              $typeName: "mesh.email.v1.FollowUpTemplate",
              templateId: "second",
              subject: "Second",
              text: "2",
              html: "",
            },
          ],
          segmentKey: "",
          marketRegion: "",
          marketCity: "",
          optimizeSendTime: false,
        },
      },
    );
  const traceColumn = async () => {
    const c = new pg.Client({ connectionString: dbHandle.url });
    await c.connect();
    try {
      return (
        await c.query<{ address: string; step_index: number; trace_context: Record<string, string> | null }>(
          `select e.address, s.step_index, s.trace_context from operations.email_follow_up_send s
           join operations.email_follow_up_enrollment e on e.id = s.enrollment_id order by e.address, s.step_index`,
        )
      ).rows;
    } finally {
      await c.end();
    }
  };

  beforeAll(async () => {
    telemetry = setupTelemetry({ serviceName: "email-trace-test", memorySpans: true });
    dbHandle = await isolatedDatabase();
    db = await openDatabase({ url: dbHandle.url, domain: domains.operations, log });
  });
  afterAll(async () => {
    await db?.close();
    await dbHandle?.drop();
    await telemetry?.shutdown();
  });

  it("sends the first step in the enrolling trace, and later or untraced steps in their own", async () => {
    // Enrolled inside a span (as the segment consumer's `process …` span is), and outside any.
    const parent = await trace
      .getTracer("test")
      .startActiveSpan("process crm.segment_membership_changed", async (span) => {
        try {
          await enrol(traced);
          return span.spanContext();
        } finally {
          span.end();
        }
      });
    await enrol(untraced);

    const rows = await traceColumn();
    expect(rows.map((r) => [r.address, r.step_index, r.trace_context !== null])).toEqual([
      ["traced@example.org", 0, true],
      ["untraced@example.org", 0, false],
    ]);
    expect(rows[0]?.trace_context?.traceparent).toBe(`00-${parent.traceId}-${parent.spanId}-01`);

    expect((await worker().round()).sent).toBe(2);
    const first = sends.find((s) => s.to === "traced@example.org");
    const other = sends.find((s) => s.to === "untraced@example.org");
    // SendEmail ran inside the step span, a child of the enrolling span in its trace.
    expect(first?.active?.traceId).toBe(parent.traceId);
    expect(first?.active?.spanId).not.toBe(parent.spanId);
    expect(other?.active).toBeDefined();
    expect(other?.active?.traceId).not.toBe(parent.traceId);

    await telemetry.flush();
    const spans = telemetry.memoryExporter?.getFinishedSpans() ?? [];
    const step = spans.find((s) => s.name === "email.follow_up.step" && s.spanContext().traceId === parent.traceId);
    expect(step?.parentSpanContext?.spanId).toBe(parent.spanId);
    expect(step?.spanContext().spanId).toBe(first?.active?.spanId);
    expect(step?.attributes["mesh.email.step_index"]).toBe(0);
    expect(step?.attributes["mesh.email.sequence_id"]).toBe("traced-follow-up");
    const root = spans.find(
      (s) => s.name === "email.follow_up.step" && s.spanContext().traceId === other?.active?.traceId,
    );
    expect(root?.parentSpanContext).toBeUndefined();

    // The second step, two days later, was planned by the scheduler: no trace kept, a new root.
    const later = await traceColumn();
    expect(later.filter((r) => r.step_index === 1).map((r) => r.trace_context)).toEqual([null, null]);
    clock = new Date(clock.getTime() + 2 * DAY + 60_000);
    expect((await worker().round()).sent).toBe(2);
    const second = sends.filter((s) => s.subject === "Second");
    expect(second).toHaveLength(2);
    for (const s of second) expect(s.active?.traceId).not.toBe(parent.traceId);
  });
});
