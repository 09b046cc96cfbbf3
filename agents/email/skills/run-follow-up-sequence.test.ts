/**
 * Follow-up sequences on PostgreSQL with a real SMTP server (smtp-server) and NATS: enrolment in
 * the contact's time zone and sending window, the durable scheduler sending through SendEmail's
 * claim + send path, a reply stopping the next step, a restart and a crash after the send sending
 * nothing twice, concurrent workers, unsubscribes, conversions (the Data agent's event), segment
 * and market cadences with fallbacks, the send-time model's counts, replays and bad input.
 */
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SegmentMembershipChange, SegmentMembershipChangedSchema } from "../../../gen/mesh/crm/v1/crm_events_pb.ts";
import { ConversionRecordedSchema } from "../../../gen/mesh/data/v1/data_events_pb.ts";
import {
  EnrollmentState,
  FollowUpChannel,
  FollowUpEngagementKind,
  type RunFollowUpSequenceRequest,
  RunFollowUpSequenceRequestSchema,
  StopCondition,
  Weekday,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import type { Running } from "../../../lib/bus/index.ts";
import { type Database, openDatabase } from "../../../lib/db/index.ts";
import { toConnectError } from "../../../lib/errors/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { domains } from "../../../servers/domains.ts";
import { eventually, isolatedBus, isolatedDatabase } from "../../../test/support/backbone.ts";
import { type SmtpSink, startSmtpSink } from "../../../test/support/smtp-sink.ts";
import { createMailTransport, type MailTransport } from "../delivery.ts";
import { createUnsubscribeRoute, loadUnsubscribeKey } from "../newsletter/unsubscribe.ts";
import { seededUniform } from "../send-time/thompson.ts";
import type { FollowUpContact } from "../sequences/contacts.ts";
import { consumeSegmentChanges, SegmentMembershipChangedEvent } from "../sequences/segments.ts";
import { ConversionRecordedEvent, consumeConversions, enrollFromSegmentChange } from "../sequences/stops.ts";
import { createFollowUpWorker, type FollowUpSend, type FollowUpWorker } from "../sequences/worker.ts";
import { recordFollowUpEngagement } from "./record-follow-up-engagement.ts";
import { runFollowUpSequence } from "./run-follow-up-sequence.ts";
import { sendEmail } from "./send-email.ts";

const log = createLogger("error");
const DAY = 86_400_000;

type RunInit = MessageInitShape<typeof RunFollowUpSequenceRequestSchema>;
type CadenceInit = NonNullable<RunInit["cadence"]>;

const contactIds = Array.from({ length: 50 }, () => randomUUID());
const contacts = new Map<string, FollowUpContact>(
  contactIds.map((id, i) => [
    id,
    {
      contactId: id,
      email: `lead${i}@example.org`,
      name: `Lead ${i}`,
      givenName: `Lead${i}`,
      familyName: "Example",
      city: "Austin",
      region: "TX",
      company: "",
      // Even contacts live in New York, odd ones have no known zone (the cadence's Chicago).
      timeZone: i % 2 === 0 ? "America/New_York" : "",
    },
  ]),
);
const lookup = async (id: string) => contacts.get(id);

function cadence(init: Partial<CadenceInit> = {}): CadenceInit {
  const base: CadenceInit = {
    sequenceId: "austin-tour",
    name: "Austin tour enquiry follow-up",
    steps: [
      { delay: durationFromMs(0), channel: FollowUpChannel.EMAIL, templateId: "thanks" },
      { delay: durationFromMs(2 * DAY), channel: FollowUpChannel.EMAIL, templateId: "reminder" },
      { delay: durationFromMs(3 * DAY), channel: FollowUpChannel.EMAIL, templateId: "last" },
    ],
    stopConditions: [StopCondition.REPLIED, StopCondition.CONVERTED],
    timeZone: "America/Chicago",
    useContactTimeZone: true,
    sendingWindow: {
      days: [Weekday.MONDAY, Weekday.TUESDAY, Weekday.WEDNESDAY, Weekday.THURSDAY, Weekday.FRIDAY],
      startTime: "09:00",
      endTime: "17:00",
    },
    templates: [
      { templateId: "thanks", subject: "Thanks for your enquiry, {{given_name|there}}", text: "Hello {{given_name}}." },
      { templateId: "reminder", subject: "Still looking in {{city}}?", text: "Tours are open." },
      { templateId: "last", subject: "Last note", text: "We are here when you need us." },
    ],
    sender: { name: "Example Senior Living", address: "care@example.com" },
  };
  return { ...base, ...init } as CadenceInit;
}

function request(init: Partial<RunInit> = {}): RunFollowUpSequenceRequest {
  return create(RunFollowUpSequenceRequestSchema, {
    requestId: randomUUID(),
    cadence: cadence(),
    contactIds: [contactIds[0] as string],
    ...init,
  } as RunInit);
}

function codeAndMessage(err: unknown): [Code, string] {
  const e = toConnectError(err, () => undefined);
  return [e.code, e.rawMessage];
}

describe("follow-up sequences on PostgreSQL with a real SMTP server", () => {
  let dbHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let db: Database;
  let sink: SmtpSink;
  let transport: MailTransport;
  // Fri 2025-03-07 16:30 CST: the weekend and the US DST change (Sun 2025-03-09) lie ahead.
  let clock = new Date("2025-03-07T22:30:00Z");
  const now = () => clock;
  const send: FollowUpSend = (req) =>
    sendEmail(
      {
        db,
        bus: { prefix: "follow-up-test" },
        now,
        log,
        transport,
        defaultFrom: { name: "", address: "noreply@example.com" },
      },
      req,
    );
  const deps = () => ({ db, now, lookup, random: seededUniform(5) });
  const key = () => loadUnsubscribeKey(db, undefined, now);

  function worker(over: Partial<Parameters<typeof createFollowUpWorker>[0]> = {}): FollowUpWorker {
    return createFollowUpWorker({ db, send, log, now, nodeId: "w", random: seededUniform(9), key, ...over });
  }

  async function sql<T>(text: string, params: unknown[] = []): Promise<T[]> {
    const c = new pg.Client({ connectionString: dbHandle.url });
    await c.connect();
    await c.query("set search_path = operations");
    try {
      return (await c.query(text, params)).rows as T[];
    } finally {
      await c.end();
    }
  }

  /** Cancels what earlier tests left due, so each test's rounds see only its own steps. */
  const quiesce = () => sql("update email_follow_up_send set status = 'cancelled' where status = 'pending'");

  const to = (address: string) => sink.messages.filter((m) => m.envelopeTo.includes(address));

  beforeAll(async () => {
    dbHandle = await isolatedDatabase();
    db = await openDatabase({ url: dbHandle.url, domain: domains.operations, log });
    sink = await startSmtpSink();
    transport = createMailTransport({ smtpUrl: sink.url, outboxDir: "/nonexistent" });
  });
  afterAll(async () => {
    transport?.close();
    await sink?.close();
    await db?.close();
    await dbHandle?.drop();
  });

  it("refuses bad input naming the field, and stores nothing", async () => {
    const cases: [RunFollowUpSequenceRequest, string][] = [
      [request({ cadence: cadence({ timeZone: "Mars/Olympus_Mons" }) }), "cadence.time_zone"],
      [
        request({
          cadence: cadence({
            steps: [{ delay: durationFromMs(0), channel: FollowUpChannel.EMAIL, templateId: "nope" }],
          }),
        }),
        "cadence.steps[0].template_id",
      ],
      [request({ contactIds: [""] }), "contact_ids[0]"],
      [request({ requestId: "not-a-uuid" }), "request_id"],
      [request({ cadence: cadence({ marketRegion: "TX" }) }), "cadence.segment_key"],
    ];
    for (const [req, field] of cases) {
      const err = await runFollowUpSequence(deps(), req).catch((e: unknown) => e);
      const [code, message] = codeAndMessage(err);
      expect(code).toBe(Code.InvalidArgument);
      expect(message).toContain(field);
    }
    expect(await sql("select 1 from email_follow_up_cadence")).toHaveLength(0);
    expect(await sql("select 1 from email_follow_up_enrollment")).toHaveLength(0);
  });

  it("plans in the contact's zone, sends due steps through SendEmail, and stops when a reply arrives", async () => {
    const contactId = contactIds[0] as string; // New York
    const res = await runFollowUpSequence(deps(), request({ contactIds: [contactId, "ct_unknown"] }));
    expect(res.enrolledCount).toBe(1);
    expect(res.skippedCount).toBe(1);
    const [e, unknown] = res.enrollments;
    expect(unknown?.state).toBe(EnrollmentState.NOT_FOUND);
    expect(e?.state).toBe(EnrollmentState.ACTIVE);
    expect(e?.timeZone).toBe("America/New_York");
    // Fri 17:30 EST is after the window: Monday 09:00, which is EDT after Sunday's change (13:00Z).
    expect(e?.nextSend?.localSendAt).toBe("2025-03-10T09:00:00-04:00");

    const w = worker();
    clock = new Date("2025-03-10T12:59:00Z");
    expect((await w.round()).sent).toBe(0);
    clock = new Date("2025-03-10T13:00:00Z");
    expect((await w.round()).sent).toBe(1);
    const [first] = to("lead0@example.org");
    expect(first?.parsed.subject).toBe("Thanks for your enquiry, Lead0");
    expect(first?.parsed.from?.text).toContain("care@example.com");

    // Step 2 is planned two calendar days after the send: Wed 09:00 EDT.
    const [next] = await sql<{ step_index: number; due_at: Date }>(
      "select step_index, due_at from email_follow_up_send where status = 'pending'",
    );
    expect(next?.step_index).toBe(1);
    expect(next?.due_at.toISOString()).toBe("2025-03-12T13:00:00.000Z");

    // The contact replies to the first email on Tuesday.
    clock = new Date("2025-03-11T15:00:00Z");
    const reply = await recordFollowUpEngagement(
      { db, now },
      {
        $typeName: "mesh.email.v1.RecordFollowUpEngagementRequest",
        requestId: randomUUID(),
        events: [
          {
            $typeName: "mesh.email.v1.FollowUpEngagementEvent",
            messageId: first?.parsed.messageId ?? "",
            contactId: "",
            kind: FollowUpEngagementKind.REPLY,
          },
        ],
      },
    );
    expect(reply.recorded).toBe(1);
    expect(reply.stoppedEnrollments).toBe(1);

    clock = new Date("2025-03-20T15:00:00Z");
    expect((await w.round()).sent).toBe(0);
    expect(to("lead0@example.org")).toHaveLength(1);
    const [row] = await sql<{ state: string; stop_reason: number; completed_steps: number }>(
      "select state, stop_reason, completed_steps from email_follow_up_enrollment where contact_id = $1",
      [contactId],
    );
    expect(row).toEqual({ state: "stopped", stop_reason: StopCondition.REPLIED, completed_steps: 1 });
  });

  it("stores a cadence alone when no contact is given", async () => {
    const res = await runFollowUpSequence(
      deps(),
      request({ contactIds: [], cadence: cadence({ sequenceId: "cadence-only" }) }),
    );
    expect([res.sequenceId, res.revision, res.enrollments.length, res.enrolledCount]).toEqual([
      "cadence-only",
      1,
      0,
      0,
    ]);
    expect(
      await sql("select sequence_id from email_follow_up_cadence where sequence_id = 'cadence-only'"),
    ).toHaveLength(1);
    expect(await sql("select 1 from email_follow_up_enrollment where sequence_id = 'cadence-only'")).toHaveLength(0);
  });

  it("replays of a request id enrol nobody twice", async () => {
    const req = request({ contactIds: [contactIds[1] as string], cadence: cadence({ sequenceId: "replay" }) });
    const a = await runFollowUpSequence(deps(), req);
    const b = await runFollowUpSequence(deps(), req);
    expect(b.enrollments[0]?.enrollmentId).toBe(a.enrollments[0]?.enrollmentId);
    expect(b.enrollments[0]?.newlyEnrolled).toBe(true);
    // Another request for the same active contact reports the enrolment as it stands.
    const c = await runFollowUpSequence(deps(), { ...req, requestId: randomUUID() });
    expect(c.enrollments[0]?.enrollmentId).toBe(a.enrollments[0]?.enrollmentId);
    expect(c.enrollments[0]?.newlyEnrolled).toBe(false);
    expect(c.enrolledCount).toBe(0);
    const rows = await sql("select 1 from email_follow_up_enrollment where sequence_id = 'replay'");
    expect(rows).toHaveLength(1);
  });

  it("survives a restart and a crash after the send: every step goes out exactly once", async () => {
    await quiesce();
    clock = new Date("2025-04-01T14:00:00Z"); // Tue 09:00 CDT
    const contactId = contactIds[3] as string; // Chicago (no zone of its own)
    await runFollowUpSequence(
      deps(),
      request({ contactIds: [contactId], cadence: cadence({ sequenceId: "restart", stopConditions: [] }) }),
    );
    // A worker that dies right after SendEmail handed the message over (before recording it).
    const dying = worker({
      send: async (req) => {
        await send(req);
        throw new Error("killed after the send");
      },
    });
    expect((await dying.round()).retried).toBe(1);
    expect(to("lead3@example.org")).toHaveLength(1);

    // A fresh worker (the restarted module) finds the step again after its backoff: SendEmail
    // answers from its record, so the message is not sent twice, and the sequence moves on.
    clock = new Date(clock.getTime() + 5 * 60_000);
    const restarted = worker();
    const running: Running = restarted.start();
    try {
      await eventually(async () => {
        const [r] = await sql<{ completed_steps: number }>(
          "select completed_steps from email_follow_up_enrollment where contact_id = $1 and sequence_id = 'restart'",
          [contactId],
        );
        return r?.completed_steps === 1 ? r : undefined;
      });
    } finally {
      await running.stop();
    }
    expect(to("lead3@example.org")).toHaveLength(1);

    // Stopped and started again: the next step (two days later, 09:05 CDT Thursday) still goes out.
    clock = new Date("2025-04-03T14:05:00Z");
    const again = worker().start();
    try {
      await eventually(() => (to("lead3@example.org").length === 2 ? true : undefined));
    } finally {
      await again.stop();
    }
    expect(to("lead3@example.org").map((m) => m.parsed.subject)).toEqual([
      "Thanks for your enquiry, Lead3",
      "Still looking in Austin?",
    ]);
    // The second message threads under the first.
    expect(to("lead3@example.org")[1]?.parsed.inReplyTo).toBe(to("lead3@example.org")[0]?.parsed.messageId);
  });

  it("never resends a step whose worker died mid-send (claim expired, SendEmail still `sending`)", async () => {
    await quiesce();
    clock = new Date("2025-04-08T14:00:00Z"); // Tue
    const contactId = contactIds[5] as string;
    await runFollowUpSequence(
      deps(),
      request({ contactIds: [contactId], cadence: cadence({ sequenceId: "midsend" }) }),
    );
    // Simulate kill -9 mid-send: the step claimed long ago and SendEmail's claim left `sending`.
    const [s] = await sql<{ id: string; request_id: string }>(
      "update email_follow_up_send set status = 'sending', claimed_at = $1, claim_token = gen_random_uuid() where status = 'pending' and enrollment_id in (select id from email_follow_up_enrollment where sequence_id = 'midsend') returning id, request_id",
      [new Date(clock.getTime() - 10 * 60_000)],
    );
    await sql(
      `insert into email_message (id, request_id, request_hash, message_id, from_address, recipient, subject, status, accepted, rejected, created_at, updated_at)
       values (gen_random_uuid(), $1, 'x', '<x@example.com>', 'care@example.com', 'lead5@example.org', 's', 'sending', '[]', '[]', now(), now())`,
      [s?.request_id],
    );
    const r = await worker().round();
    expect(r.claimed).toBe(1);
    expect(to("lead5@example.org")).toHaveLength(0);
    const [row] = await sql<{ status: string }>("select status from email_follow_up_send where id = $1", [s?.id]);
    expect(row?.status).toBe("unknown");
    // The sequence moved on to step 2 rather than retrying step 1.
    const [e] = await sql<{ completed_steps: number }>(
      "select completed_steps from email_follow_up_enrollment where sequence_id = 'midsend'",
    );
    expect(e?.completed_steps).toBe(1);
  });

  it("concurrent workers send each (enrolment, step) once", async () => {
    await quiesce();
    clock = new Date("2025-04-15T14:00:00Z"); // Tue 09:00 CDT
    const ids = contactIds.slice(10, 40);
    await runFollowUpSequence(
      deps(),
      request({
        contactIds: ids,
        cadence: cadence({
          sequenceId: "concurrent",
          stopConditions: [],
          useContactTimeZone: false,
          steps: [
            { delay: durationFromMs(0), channel: FollowUpChannel.EMAIL, templateId: "thanks" },
            { delay: durationFromMs(DAY), channel: FollowUpChannel.EMAIL, templateId: "reminder" },
          ],
        }),
      }),
    );
    const ws = [
      worker({ nodeId: "a", batch: 7 }),
      worker({ nodeId: "b", batch: 7 }),
      worker({ nodeId: "c", batch: 7 }),
    ];
    const drain = async () => {
      for (;;) {
        const rs = await Promise.all(ws.map((w) => w.round()));
        if (rs.every((r) => r.claimed === 0)) return;
      }
    };
    await drain();
    clock = new Date("2025-04-16T15:00:00Z");
    await drain();
    for (let i = 10; i < 40; i++) expect(to(`lead${i}@example.org`)).toHaveLength(2);
    const [c] = await sql<{ n: string }>(
      "select count(*) as n from email_follow_up_enrollment where sequence_id = 'concurrent' and state = 'completed'",
    );
    expect(Number(c?.n)).toBe(30);
  });

  it("the daily send limit moves the day's extra steps to the next day", async () => {
    await quiesce();
    clock = new Date("2025-05-20T14:00:00Z"); // Tue 09:00 CDT
    await runFollowUpSequence(
      deps(),
      request({
        contactIds: contactIds.slice(40, 44),
        cadence: cadence({
          sequenceId: "limited",
          useContactTimeZone: false,
          sendingWindow: undefined,
          dailySendLimit: 2,
          steps: [{ delay: durationFromMs(0), channel: FollowUpChannel.EMAIL, templateId: "thanks" }],
        }),
      }),
    );
    const w = worker();
    expect(await w.round()).toMatchObject({ sent: 2, deferred: 2 });
    // Midnight in Chicago (CDT): 05:00Z.
    const due = await sql<{ due_at: Date }>("select due_at from email_follow_up_send where status = 'pending'");
    expect(due.map((d) => d.due_at.toISOString())).toEqual(["2025-05-21T05:00:00.000Z", "2025-05-21T05:00:00.000Z"]);
    expect((await w.round()).sent).toBe(0);
    clock = new Date("2025-05-21T05:00:00Z");
    expect((await w.round()).sent).toBe(2);
    for (let i = 40; i < 44; i++) expect(to(`lead${i}@example.org`)).toHaveLength(1);
  });

  it("an unsubscribed address is skipped and the enrolment stops as unsubscribed", async () => {
    await quiesce();
    clock = new Date("2025-04-22T14:00:00Z");
    const [a, b] = [contactIds[6] as string, contactIds[7] as string];
    await sql(
      "insert into email_suppression (address, reason, created_at) values ('lead7@example.org', 'unsubscribed (one-click)', now())",
    );
    const res = await runFollowUpSequence(
      deps(),
      request({ contactIds: [a, b], cadence: cadence({ sequenceId: "unsub" }) }),
    );
    expect(res.enrollments[1]?.state).toBe(EnrollmentState.SUPPRESSED);
    expect(res.enrollments[1]?.stopReason).toBe(StopCondition.UNSUBSCRIBED);
    const w = worker();
    await w.round();
    expect(to("lead6@example.org")).toHaveLength(1);
    // lead6 unsubscribes after the first email: the next step is suppressed and the sequence stops.
    await sql(
      "insert into email_suppression (address, reason, created_at) values ('lead6@example.org', 'unsubscribed (one-click, newsletter)', now())",
    );
    clock = new Date("2025-04-25T14:00:00Z");
    expect((await w.round()).stopped).toBe(1);
    expect(to("lead6@example.org")).toHaveLength(1);
    expect(to("lead7@example.org")).toHaveLength(0);
    const [row] = await sql<{ state: string; stop_reason: number }>(
      "select state, stop_reason from email_follow_up_enrollment where sequence_id = 'unsub' and contact_id = $1",
      [a],
    );
    expect(row).toEqual({ state: "stopped", stop_reason: StopCondition.UNSUBSCRIBED });
  });

  it("carries RFC 8058 one-click unsubscribe; a POST to it suppresses the address and stops every follow-up", async () => {
    await quiesce();
    clock = new Date("2025-04-22T14:00:00Z");
    const contactId = contactIds[44] as string;
    const unsubscribe = { url: "https://example.com/email/unsubscribe?list=tours", mailto: "unsubscribe@example.com" };
    await runFollowUpSequence(
      deps(),
      request({ contactIds: [contactId], cadence: cadence({ sequenceId: "unsub-one-click", unsubscribe }) }),
    );
    // A second cadence of the same contact, without the headers, stops as well.
    await runFollowUpSequence(
      deps(),
      request({
        contactIds: [contactId],
        cadence: cadence({
          sequenceId: "unsub-other",
          steps: [{ delay: durationFromMs(5 * DAY), channel: FollowUpChannel.EMAIL, templateId: "thanks" }],
        }),
      }),
    );
    const w = worker();
    expect((await w.round()).sent).toBe(1);
    const [m] = to("lead44@example.org");
    const raw = (m?.raw.toString("utf8") ?? "").replace(/\r\n(?=[ \t])/g, "");
    expect(raw).toMatch(/^List-Unsubscribe-Post: List-Unsubscribe=One-Click$/m);
    const header = /^List-Unsubscribe: (.*)$/m.exec(raw)?.[1] ?? "";
    expect(header).toContain("<mailto:unsubscribe@example.com>");
    const url = new URL(/<(https:[^>]+)>/.exec(header)?.[1] ?? "");
    expect(url.searchParams.get("list")).toBe("tours");
    const token = url.searchParams.get("token") ?? "";
    expect(token).toMatch(/^f[0-9a-f]{32}\./);

    const route = createUnsubscribeRoute({ db, key, now, log });
    const server = http.createServer((req, res) => {
      void route(req, res).then((handled) => {
        if (!handled) res.writeHead(404).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const post = () =>
        fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}${url.pathname}?token=${token}`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: "List-Unsubscribe=One-Click",
        });
      expect((await post()).status).toBe(200);
      expect((await post()).status).toBe(200); // a repeated POST changes nothing more
    } finally {
      await new Promise((r) => server.close(r));
    }
    expect(await sql("select reason from email_suppression where address = 'lead44@example.org'")).toEqual([
      { reason: "unsubscribed (one-click, follow-up unsub-one-click)" },
    ]);
    expect(
      await sql(
        "select sequence_id, state, stop_reason from email_follow_up_enrollment where contact_id = $1 order by sequence_id",
        [contactId],
      ),
    ).toEqual([
      { sequence_id: "unsub-one-click", state: "stopped", stop_reason: StopCondition.UNSUBSCRIBED },
      { sequence_id: "unsub-other", state: "stopped", stop_reason: StopCondition.UNSUBSCRIBED },
    ]);
    clock = new Date("2025-05-30T14:00:00Z");
    expect((await w.round()).claimed).toBe(0);
    expect(to("lead44@example.org")).toHaveLength(1);
  });

  it("a conversion recorded by the Data agent stops the sequence (durable consumer)", async () => {
    await quiesce();
    clock = new Date("2025-04-29T14:00:00Z");
    const contactId = contactIds[8] as string;
    await runFollowUpSequence(
      deps(),
      request({ contactIds: [contactId], cadence: cadence({ sequenceId: "convert" }) }),
    );
    const { bus, dispose } = await isolatedBus("follow-up-conversions");
    const consumer = await consumeConversions({ db, bus, log, now });
    try {
      await bus.publishEvent(
        ConversionRecordedEvent,
        create(ConversionRecordedSchema, {
          conversionId: randomUUID(),
          conversionName: "tour_booked",
          contactId,
          occurredAt: timestampFromDate(clock),
        }),
      );
      await eventually(async () => {
        const [r] = await sql<{ state: string; stop_reason: number }>(
          "select state, stop_reason from email_follow_up_enrollment where sequence_id = 'convert'",
        );
        return r?.state === "stopped" ? r : undefined;
      });
    } finally {
      await consumer.stop();
      await dispose();
    }
    const [r] = await sql<{ stop_reason: number }>(
      "select stop_reason from email_follow_up_enrollment where sequence_id = 'convert'",
    );
    expect(r?.stop_reason).toBe(StopCondition.CONVERTED);
    expect((await worker().round()).sent).toBe(0);
    expect(to("lead8@example.org")).toHaveLength(0);
  });

  it("enrols segment joiners in their market's cadence: city, then region, then the segment default", async () => {
    clock = new Date("2025-05-06T14:00:00Z");
    const store = async (sequenceId: string, marketRegion: string, marketCity: string) =>
      runFollowUpSequence(
        deps(),
        request({
          contactIds: [contactIds[9] as string],
          cadence: cadence({ sequenceId, segmentKey: "memory-care", marketRegion, marketCity }),
        }),
      );
    await store("mc-default", "", "");
    await store("mc-texas", "TX", "");
    await store("mc-austin", "TX", "Austin");
    const em = db.fork();
    const enrol = (contactId: string, city: string, region: string, segmentKey = "memory-care") =>
      enrollFromSegmentChange(
        em,
        { schema: db.schema, lookup, now, random: seededUniform(1) },
        {
          contactId,
          segmentKey,
          city,
          region,
          joined: true,
          occurredAt: clock,
          eventId: randomUUID(),
        },
      );
    const seq = async (contactId: string) =>
      (
        await sql<{ sequence_id: string }>("select sequence_id from email_follow_up_enrollment where id = $1", [
          contactId,
        ])
      )[0]?.sequence_id;
    const austin = await enrol(contactIds[20] as string, "austin", "tx");
    const dallas = await enrol(contactIds[21] as string, "Dallas", "TX");
    const denver = await enrol(contactIds[22] as string, "Denver", "CO");
    expect(await seq(austin?.enrollmentId ?? "")).toBe("mc-austin");
    expect(await seq(dallas?.enrollmentId ?? "")).toBe("mc-texas");
    expect(await seq(denver?.enrollmentId ?? "")).toBe("mc-default");
    expect(await enrol(contactIds[23] as string, "Austin", "TX", "no-such-segment")).toBeUndefined();

    // The CRM's event, through the durable consumer: a joiner from Dallas gets the Texas cadence.
    const { bus, dispose } = await isolatedBus("follow-up-segments");
    const consumer = await consumeSegmentChanges({ db, bus, log, now, lookup, random: seededUniform(3) });
    try {
      const contactId = contactIds[25] as string;
      const event = create(SegmentMembershipChangedSchema, {
        segmentKey: "memory-care",
        contactId,
        change: SegmentMembershipChange.JOINED,
        city: "Dallas",
        region: "TX",
        market: "dallas|tx",
        changedAt: timestampFromDate(clock),
      });
      await bus.publishEvent(SegmentMembershipChangedEvent, event, { msgId: randomUUID() });
      const row = await eventually(async () => {
        const [r] = await sql<{ sequence_id: string; state: string }>(
          "select sequence_id, state from email_follow_up_enrollment where contact_id = $1 and sequence_id like 'mc-%'",
          [contactId],
        );
        return r;
      });
      expect(row).toEqual({ sequence_id: "mc-texas", state: "active" });
      // Leaving the segment enrols nobody.
      await bus.publishEvent(
        SegmentMembershipChangedEvent,
        create(SegmentMembershipChangedSchema, {
          ...event,
          contactId: contactIds[26] as string,
          change: SegmentMembershipChange.LEFT,
        }),
        { msgId: randomUUID() },
      );
      // A later join (of another contact) is processed after the leave: once it is in, the leave was seen.
      await bus.publishEvent(
        SegmentMembershipChangedEvent,
        create(SegmentMembershipChangedSchema, { ...event, contactId: contactIds[27] as string }),
        { msgId: randomUUID() },
      );
      await eventually(async () =>
        (
          await sql("select 1 from email_follow_up_enrollment where contact_id = $1 and sequence_id like 'mc-%'", [
            contactIds[27],
          ])
        ).length === 1
          ? true
          : undefined,
      );
      expect(
        await sql("select 1 from email_follow_up_enrollment where contact_id = $1 and sequence_id like 'mc-%'", [
          contactIds[26],
        ]),
      ).toHaveLength(0);
    } finally {
      await consumer.stop();
      await dispose();
    }
  });

  it("learns send times: a send counts on its hour-of-week arm, its first open is a success", async () => {
    await quiesce();
    clock = new Date("2025-05-13T14:00:00Z"); // Tue 09:00 CDT
    const contactId = contactIds[2] as string;
    const res = await runFollowUpSequence(
      deps(),
      request({
        contactIds: [contactId],
        cadence: cadence({
          sequenceId: "learn",
          segmentKey: "assisted",
          optimizeSendTime: true,
          useContactTimeZone: false,
        }),
      }),
    );
    const due = res.enrollments[0]?.nextSend?.sendAt;
    expect(due).toBeDefined();
    // Chosen inside the window within the next day.
    const [s] = await sql<{ arm: number; due_at: Date }>(
      "select arm, due_at from email_follow_up_send where segment_key = 'segment:assisted'",
    );
    expect(s?.due_at.getTime()).toBeGreaterThanOrEqual(clock.getTime());
    expect(s?.due_at.getTime()).toBeLessThan(clock.getTime() + DAY);
    clock = new Date(s?.due_at ?? clock);
    expect((await worker().round()).sent).toBe(1);
    const [m] = to("lead2@example.org");
    const open = (kind: FollowUpEngagementKind) =>
      recordFollowUpEngagement(
        { db, now },
        {
          $typeName: "mesh.email.v1.RecordFollowUpEngagementRequest",
          requestId: randomUUID(),
          events: [
            {
              $typeName: "mesh.email.v1.FollowUpEngagementEvent",
              messageId: m?.parsed.messageId ?? "",
              contactId: "",
              kind,
            },
          ],
        },
      );
    expect((await open(FollowUpEngagementKind.OPEN)).recorded).toBe(1);
    expect((await open(FollowUpEngagementKind.OPEN)).repeatedEvents).toBe(1);
    expect((await open(FollowUpEngagementKind.CLICK)).recorded).toBe(1); // a first click, not a second success
    const arms = await sql<{ arm: number; trials: string; successes: string }>(
      "select arm, trials, successes from email_send_time_arm where segment_key = 'segment:assisted'",
    );
    expect(arms).toEqual([{ arm: s?.arm, trials: "1", successes: "1" }]);
  });
});
