import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AddDoNotContactRequestSchema,
  AppointmentChangeKind,
  CancelAppointmentRequestSchema,
  ConsentChannel,
  ConsentState,
  CreateDealRequestSchema,
  EraseContactRequestSchema,
  ExportContactDataRequestSchema,
  GetContactRequestSchema,
  InteractionType,
  InvitationStatus,
  ParticipationRole,
  RecordConsentRequestSchema,
  ScheduleAppointmentRequestSchema,
  TouchpointChannel,
  TrackInteractionRequestSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { EmailService, EmailStatus, SendEmailRequestSchema } from "../../../gen/mesh/email/v1/email_service_pb.ts";
import type { Database } from "../../../lib/db/index.ts";
import { NotFoundError } from "../../../lib/errors/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { createErrorInterceptor } from "../../../lib/server/index.ts";
import type { MeshClient } from "../../../lib/transport/index.ts";
import { domains } from "../../../servers/domains.ts";
import { type BackboneFixture, eventually, openBackboneFixture } from "../../../test/support/backbone.ts";
import { type SmtpSink, startSmtpSink } from "../../../test/support/smtp-sink.ts";
import { createSendGuard } from "../../email/consent/guard.ts";
import { eraseRecipientData, exportRecipientData } from "../../email/consent/privacy.ts";
import { createMailTransport, type MailTransport } from "../../email/delivery.ts";
import { sendEmail } from "../../email/skills/send-email.ts";
import { cancelAppointment } from "../appointments/api.ts";
import { addDoNotContact, recordConsent } from "../consent/consent.ts";
import { getContact } from "../contacts/read.ts";
import { createDeal } from "../pipeline/deals.ts";
import { scheduleAppointment } from "../skills/schedule-appointment.ts";
import { trackInteraction } from "../skills/track-interaction.ts";
import { eraseContact, exportContactData } from "./privacy.ts";

const log = createLogger("error");
const now = () => new Date("2026-05-04T12:00:00Z");

// The person's data: every string must be gone from the database and the streams after erasure.
const person = {
  email: "zelda.quixote@example.net",
  givenName: "Zelda",
  familyName: "Quixote",
  phone: "+15125550199",
  anonymousId: "anon-zq-7731",
  city: "Xyzzyville",
};
const personalStrings = Object.values(person);

/** The Email agent behind its generated client, in process (as link outreach's tests do). */
function emailClient(db: Database, transport: MailTransport, bus: { prefix: string }): MeshClient {
  const outside = AsyncLocalStorage.snapshot();
  const deps = { db, bus, now, log, transport, defaultFrom: { name: "Mesh", address: "noreply@mesh.test" } };
  const rt = createRouterTransport(
    (router) => {
      router.service(EmailService, {
        sendEmail: (req) => outside(() => sendEmail(deps, req)),
        exportRecipientData: (req) => outside(() => exportRecipientData(deps, req)),
        eraseRecipientData: (req) => outside(() => eraseRecipientData(deps, req)),
      });
    },
    { router: { interceptors: [createErrorInterceptor(log), createValidateInterceptor()] } },
  );
  return {
    agent: (service) => createClient(service, rt),
    server: () => {
      throw new Error("not used");
    },
    breakerStates: () => ({ content: "closed", operations: "closed", technical: "closed" }),
    close: () => undefined,
  } as MeshClient;
}

describe("export and erasure of a contact on PostgreSQL and NATS", () => {
  let fx: BackboneFixture;
  let sink: SmtpSink;
  let transport: MailTransport;
  let client: MeshClient;
  let deps: Parameters<typeof eraseContact>[0];
  let contactId = "";
  let sharedUid = "";
  const organizer = { name: "Sam Rivera", email: "sam.rivera@agency.example" };
  const other = { name: "Olga Other", email: "olga.other@example.org", role: ParticipationRole.REQUIRED };
  /** Books a slot through the skill (America/Chicago working hours). */
  const book = (start: string, attendees: { name: string; email: string; contactId?: string }[], suppress: boolean) =>
    scheduleAppointment(
      deps,
      create(ScheduleAppointmentRequestSchema, {
        requestId: randomUUID(),
        organizer,
        attendees,
        timeZone: "America/Chicago",
        duration: { seconds: 3600n },
        action: {
          case: "book",
          value: {
            start: timestampFromDate(new Date(start)),
            summary: `Tour with ${person.givenName} ${person.familyName}`,
            description: `Call ${person.phone} if late.`,
            location: "100 Congress Ave, Austin",
            suppressInvitations: suppress,
          },
        },
      }),
    );

  const emailTo = (address: string) =>
    client.agent(EmailService).sendEmail(
      create(SendEmailRequestSchema, {
        requestId: randomUUID(),
        to: { address, name: `${person.givenName} ${person.familyName}` },
        subject: `Your tour, ${person.givenName}`,
        text: "See you on Friday.",
        tag: "crm.appointment",
      }),
    );

  /** Every message of a stream, with its subject and payload as text. */
  async function streamTexts(stream: string): Promise<{ subject: string; text: string }[]> {
    const info = await fx.bus.jsm.streams.info(stream);
    const out = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await fx.bus.jsm.streams.getMessage(stream, { seq }).catch(() => null);
      if (m !== null) out.push({ subject: m.subject, text: Buffer.from(m.data).toString("latin1") });
    }
    return out;
  }
  async function flushed(): Promise<void> {
    await fx.relay.flush();
    await eventually(async () => {
      const [r] = await fx.db.fork().getConnection().execute(`select count(*)::int as n from "operations"."outbox"`);
      return r?.n === 0 ? true : undefined;
    });
  }

  beforeAll(async () => {
    fx = await openBackboneFixture(domains.operations, "crm-privacy-test");
    sink = await startSmtpSink();
    transport = createMailTransport({ smtpUrl: sink.url, outboxDir: "/nonexistent", guard: createSendGuard(fx.db) });
    client = emailClient(fx.db, transport, fx.bus);
    deps = { db: fx.db, bus: fx.bus, client, now, log };
    // An anonymous visit, then an enquiry with the email: stitched into one person.
    const base = { type: InteractionType.PAGE_VIEW, channel: TouchpointChannel.WEB, city: person.city, region: "TX" };
    await trackInteraction(
      deps,
      create(TrackInteractionRequestSchema, {
        requestId: randomUUID(),
        interaction: {
          ...base,
          eventId: "zq-1",
          anonymousId: person.anonymousId,
          url: "https://example.com/x",
          occurredAt: timestampFromDate(new Date("2026-05-01T10:00:00Z")),
        },
      }),
    );
    const enquiry = await trackInteraction(
      deps,
      create(TrackInteractionRequestSchema, {
        requestId: randomUUID(),
        interaction: {
          ...base,
          type: InteractionType.FORM_SUBMISSION,
          eventId: "zq-2",
          anonymousId: person.anonymousId,
          email: person.email,
          occurredAt: timestampFromDate(new Date("2026-05-01T10:05:00Z")),
        },
        contact: { givenName: person.givenName, familyName: person.familyName, phone: person.phone, city: person.city },
      }),
    );
    contactId = enquiry.contactId;
    await recordConsent(
      deps,
      create(RecordConsentRequestSchema, {
        requestId: randomUUID(),
        contactId,
        channel: ConsentChannel.EMAIL,
        state: ConsentState.GRANTED,
        source: "enquiry-form",
        occurredAt: timestampFromDate(new Date("2026-05-01T10:05:00Z")),
      }),
    );
    await addDoNotContact(
      deps,
      create(AddDoNotContactRequestSchema, {
        requestId: randomUUID(),
        target: { case: "contactId", value: contactId },
        reason: "asked on the phone",
        source: "support",
      }),
    );
    await createDeal(
      { ...deps },
      create(CreateDealRequestSchema, {
        requestId: randomUUID(),
        contactId,
        name: `${person.givenName} ${person.familyName} move-in`,
      }),
    );
    await fx.db
      .fork()
      .getConnection()
      .execute(
        `insert into "operations"."crm_enrichment_cache" (provider, input_key, email_key, fields, fetched_at, expires_at)
         values ('people', repeat('a', 64), encode(sha256(convert_to(?, 'UTF8')), 'hex'), ?::jsonb, now(), now() + interval '1 day')`,
        [person.email, JSON.stringify([{ field: "given_name", value: person.givenName }])],
      );
    // A merge of a duplicate record of the person into the contact, since undone: its audit row
    // keeps both records as they were (what UnmergeContacts restores from).
    await fx.db
      .fork()
      .getConnection()
      .execute(
        `insert into "operations"."crm_contact_merge" (id, request_id, survivor_id, merged_ids, previous, moved_interaction_ids,
           moved_identities, method, match_probability, merged_at, unmerge_request_id, unmerged_at)
         values (gen_random_uuid(), gen_random_uuid(), ?, ?::jsonb, ?::jsonb, '[]', '{}', 'fellegi-sunter', 0.97, now(), gen_random_uuid(), now())`,
        [
          contactId,
          JSON.stringify([randomUUID()]),
          JSON.stringify([
            { id: contactId, email: person.email, given_name: person.givenName, family_name: person.familyName },
            { email: person.email.toUpperCase(), phone: person.phone, city: person.city },
          ]),
        ],
      );
    expect((await emailTo(person.email)).status).toBe(EmailStatus.SENT);
    // An appointment with the person alone, invited by email, then cancelled with a reason naming
    // them; and one with another attendee too (invitations suppressed), which must keep that attendee.
    const zelda = { name: `${person.givenName} ${person.familyName}`, email: person.email, contactId };
    const alone = await book("2026-05-05T15:00:00Z", [zelda], false);
    expect(alone.deliveries.map((d) => d.status)).toEqual([InvitationStatus.SENT]);
    const cancelled = await cancelAppointment(
      deps,
      create(CancelAppointmentRequestSchema, {
        requestId: randomUUID(),
        uid: alone.appointment?.uid ?? "",
        reason: `${person.givenName} asked to move it.`,
      }),
    );
    expect(cancelled.deliveries.map((d) => d.status)).toEqual([InvitationStatus.SENT]);
    const shared = await book("2026-05-05T17:00:00Z", [zelda, other], true);
    // One whose invitations went out: the other attendee's copy names the person (subject, ATTENDEE).
    const invited = await book("2026-05-06T15:00:00Z", [zelda, other], false);
    expect(invited.deliveries.map((d) => d.status)).toEqual([InvitationStatus.SENT, InvitationStatus.SENT]);
    sharedUid = shared.appointment?.uid ?? "";
    expect(shared.appointment?.ics).toContain(person.email);
    await flushed();
  });
  afterAll(async () => {
    transport?.close();
    await sink?.close();
    await fx?.dispose();
  });

  it("exports everything held about the contact, the Email agent's part included", async () => {
    const x = await exportContactData(deps, create(ExportContactDataRequestSchema, { contactId }));
    expect(x.contact?.email).toBe(person.email);
    expect(x.contact?.phone).toBe(person.phone);
    expect(x.identities.map((i) => `${i.kind}:${i.value}`).sort()).toEqual(
      [`anonymous:${person.anonymousId}`, `contact:${contactId}`, `email:${person.email}`].sort(),
    );
    expect(x.interactions.map((i) => i.eventId)).toEqual(["zq-1", "zq-2"]);
    expect(x.interactionsTruncated).toBe(false);
    expect(x.deals.map((d) => d.name)).toEqual(["Zelda Quixote move-in"]);
    expect(x.dealStageChanges).toHaveLength(1);
    expect(x.consent.map((c) => c.state)).toEqual([ConsentState.GRANTED]);
    expect(x.consentHistory.map((c) => c.source)).toEqual(["enquiry-form"]);
    expect(x.doNotContact.map((d) => d.contactId)).toEqual([contactId]);
    expect(x.enrichmentCache.map((c) => c.provider)).toEqual(["people"]);
    expect(x.email?.messages.map((m) => [m.recipient, m.subject]).sort()).toEqual(
      [
        [person.email, "Your tour, Zelda"],
        [person.email, "Invitation: Tour with Zelda Quixote"],
        [person.email, "Cancelled: Tour with Zelda Quixote"],
        [person.email, "Invitation: Tour with Zelda Quixote"],
      ].sort(),
    );
    // Appointments: the person's own attendee entry only, the changes, the invitations to them.
    // Both were booked at the same (fixed) time, so the export's (created_at, id) order is by id:
    // compare them by start.
    const appointments = [...x.appointments].sort(
      (a, b) => Number(a.start?.seconds ?? 0n) - Number(b.start?.seconds ?? 0n),
    );
    expect(appointments.map((a) => [a.summary, a.cancelled, a.attendance.map((p) => p.email)])).toEqual([
      ["Tour with Zelda Quixote", true, [person.email]],
      ["Tour with Zelda Quixote", false, [person.email]],
      ["Tour with Zelda Quixote", false, [person.email]],
    ]);
    expect(appointments[0]?.changes.map((c) => [c.kind, c.sequence])).toEqual([
      [AppointmentChangeKind.BOOKED, 0],
      [AppointmentChangeKind.CANCELLED, 1],
    ]);
    expect(appointments[0]?.invitations.map((i) => [i.email, i.status])).toEqual([
      [person.email, InvitationStatus.SENT],
      [person.email, InvitationStatus.SENT],
    ]);
    expect(appointments[1]?.invitations.map((i) => i.status)).toEqual([InvitationStatus.SUPPRESSED]);
    expect(appointments[1]?.organizer?.email).toBe(organizer.email);
    await expect(
      exportContactData(deps, create(ExportContactDataRequestSchema, { contactId: randomUUID() })),
    ).rejects.toThrow(NotFoundError);
  });

  it("erases the contact: no personal data left in the database or readable in the streams, an audit row without any", async () => {
    const events = (await streamTexts(fx.bus.streams.events)).filter((m) => m.text.includes(person.anonymousId));
    expect(events.length).toBeGreaterThan(0); // the interaction events carried the person's identifiers

    const requestId = randomUUID();
    const res = await eraseContact(
      deps,
      create(EraseContactRequestSchema, { requestId, contactId, requestedBy: "ticket-4711" }),
    );
    expect(res.contactId).toBe(contactId);
    expect(res.counts?.contacts).toBe(1);
    expect(res.counts?.interactions).toBe(2);
    expect(res.counts?.identities).toBe(3);
    expect(res.counts?.consentRecords).toBe(1);
    expect(res.counts?.doNotContactEntries).toBe(1);
    expect(res.counts?.enrichmentCacheEntries).toBe(1);
    // Three messages to the person before, one invitation to them and one to the other attendee.
    expect(res.counts?.emailMessages).toBe(5);
    expect(res.counts?.appointments).toBe(3);
    expect(res.counts?.calendars).toBe(1);
    expect(res.counts?.mergeRecords).toBe(1);
    expect(res.counts?.eventMessages).toBeGreaterThanOrEqual(events.length);
    await flushed();

    // Every text, JSON and binary column of every table of the schema.
    const conn = fx.db.fork().getConnection();
    const columns = await conn.execute<{ table_name: string; column_name: string; data_type: string }[]>(
      `select c.table_name, c.column_name, c.data_type from information_schema.columns c
       join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name
       where c.table_schema = 'operations' and t.table_type = 'BASE TABLE'
         and c.data_type in ('text', 'character varying', 'character', 'jsonb', 'json', 'bytea')`,
    );
    expect(columns.length).toBeGreaterThan(20);
    const found: string[] = [];
    for (const c of columns) {
      for (const s of personalStrings) {
        const test =
          c.data_type === "bytea"
            ? `position(convert_to(?, 'UTF8') in "${c.column_name}") > 0`
            : `"${c.column_name}"::text ilike '%' || ? || '%'`;
        const [hit] = await conn.execute<{ n: number }[]>(
          `select count(*)::int as n from "operations"."${c.table_name}" where ${test}`,
          [s],
        );
        if ((hit?.n ?? 0) > 0) found.push(`${c.table_name}.${c.column_name} holds ${s}`);
      }
    }
    expect(found).toEqual([]);

    // The shared appointment keeps the other attendee, in its row, its iTIP text and its invitation;
    // the person's entry is a placeholder; the organiser is untouched.
    const [shared] = await conn.execute<
      { id: string; attendees: Record<string, unknown>[]; organizer_email: string }[]
    >(`select id, attendees, organizer_email from "operations"."crm_appointment" where uid = ?`, [sharedUid]);
    expect(shared?.organizer_email).toBe(organizer.email);
    expect(shared?.attendees.map((a) => [a.email, a.name, a.contactId, a.erased ?? false])).toEqual([
      ["", "", "", true],
      [other.email, other.name, "", false],
    ]);
    const [sharedChange] = await conn.execute<{ ics: string }[]>(
      `select ics from "operations"."crm_appointment_change" where appointment_id = ?`,
      [shared?.id],
    );
    const unfolded = sharedChange?.ics.replace(/\r\n[ \t]/g, "") ?? "";
    expect(unfolded).toContain(`mailto:${other.email}`);
    expect(unfolded).toContain(`mailto:${organizer.email}`);
    expect(unfolded).toContain("SUMMARY:Tour with [erased]");
    expect(unfolded.match(/^ATTENDEE/gm)).toHaveLength(1);
    const invites = await conn.execute<{ email: string }[]>(
      `select i.email from "operations"."crm_appointment_invite" i join "operations"."crm_appointment_change" c
         on c.id = i.change_id where c.appointment_id = ? order by i.email`,
      [shared?.id],
    );
    expect(invites.map((i) => i.email)).toEqual(["", other.email]);

    // No readable event about the person is left, in any stream (ContactErased names the id only).
    for (const stream of [fx.bus.streams.events, fx.bus.streams.dlq]) {
      for (const m of await streamTexts(stream)) {
        for (const s of personalStrings) expect(m.text.includes(s), `${m.subject} holds ${s}`).toBe(false);
        if (!m.subject.endsWith(".contact_erased")) {
          expect(m.text.includes(contactId), `${m.subject} names the contact`).toBe(false);
        }
      }
    }
    expect((await streamTexts(fx.bus.streams.events)).some((m) => m.subject.endsWith(".crm.contact_erased"))).toBe(
      true,
    );

    // The audit record exists and says what was done, by whom, when.
    const [audit] = await conn.execute<{ id: string; requested_by: string; counts: Record<string, number> }[]>(
      `select id, requested_by, counts from "operations"."crm_erasure_audit" where contact_id = ?`,
      [contactId],
    );
    expect(audit?.id).toBe(res.erasureId);
    expect(audit?.requested_by).toBe("ticket-4711");
    expect(audit?.counts.interactions).toBe(2);

    // A replay answers the same erasure; the contact is a blank tombstone; the address stays blocked.
    const again = await eraseContact(deps, create(EraseContactRequestSchema, { requestId, contactId }));
    expect(again.erasureId).toBe(res.erasureId);
    const tomb = await getContact(deps, create(GetContactRequestSchema, { contactId }));
    expect([tomb.contact?.email, tomb.contact?.givenName, tomb.contact?.phone]).toEqual(["", "", ""]);
    expect((await emailTo(person.email)).status).toBe(EmailStatus.SUPPRESSED);
    // Before: three to the person, then an invitation each to them and to the other attendee.
    expect(sink.messages).toHaveLength(5);
  });
});
