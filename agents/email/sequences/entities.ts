/**
 * Tables of follow-up sequences and send-time learning in the `operations` schema, as their
 * migrations create them. The code reads and writes them with SQL (claims with SKIP LOCKED, bulk
 * updates); these definitions keep the schema check (servers/migrations.test.ts) exact.
 */
import { defineEntity, p } from "@mikro-orm/postgresql";

/** A cadence, by sequence id: its definition as protobuf JSON and the segment and market it serves. */
export const EmailFollowUpCadence = defineEntity({
  name: "EmailFollowUpCadence",
  tableName: "email_follow_up_cadence",
  indexes: [{ name: "email_follow_up_cadence_market_index", properties: ["segmentKey", "marketRegion", "marketCity"] }],
  properties: {
    sequenceId: p.string().length(64).primary(),
    revision: p.integer(),
    name: p.string().length(200).default(""),
    definition: p.json<unknown>(),
    stopConditions: p.json<unknown>(),
    segmentKey: p.string().length(128).default(""),
    marketRegion: p.string().length(16).default(""),
    marketCity: p.string().length(100).default(""),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

/** One contact's enrolment in a sequence; at most one active per (sequence, contact). */
export const EmailFollowUpEnrollment = defineEntity({
  name: "EmailFollowUpEnrollment",
  tableName: "email_follow_up_enrollment",
  indexes: [
    {
      name: "email_follow_up_enrollment_active_unique",
      expression: `create unique index "email_follow_up_enrollment_active_unique" on "operations"."email_follow_up_enrollment" ("sequence_id", "contact_id") where state = 'active'`,
    },
    { name: "email_follow_up_enrollment_contact_index", properties: ["contactId", "state"] },
    { name: "email_follow_up_enrollment_sequence_index", properties: ["sequenceId", "contactId", "createdAt"] },
  ],
  properties: {
    id: p.uuid().primary(),
    sequenceId: p.string().length(64),
    contactId: p.string().length(128),
    address: p.string().length(254),
    recipient: p.string().length(254),
    name: p.string().length(200).default(""),
    fields: p.json<unknown>(),
    timeZone: p.string().length(64),
    segmentKey: p.string().length(128).default(""),
    state: p.string().length(12),
    stopReason: p.integer().default(0),
    stopDetail: p.string().length(300).default(""),
    completedSteps: p.integer().default(0),
    nextStep: p.integer().default(0),
    nextDueAt: p.datetime().nullable(),
    lastMessageId: p.string().length(255).default(""),
    requestId: p.uuid().nullable(),
    enrolledAt: p.datetime(),
    stoppedAt: p.datetime().nullable(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

/** One step of an enrolment, due at an instant; claimed, sent at most once (request id), recorded. */
export const EmailFollowUpSend = defineEntity({
  name: "EmailFollowUpSend",
  tableName: "email_follow_up_send",
  uniques: [{ name: "email_follow_up_send_enrollment_step_unique", properties: ["enrollmentId", "stepIndex"] }],
  indexes: [
    { name: "email_follow_up_send_due_index", properties: ["status", "dueAt"] },
    { name: "email_follow_up_send_message_id_index", properties: ["messageId"] },
  ],
  properties: {
    id: p.uuid().primary(),
    enrollmentId: p.uuid(),
    stepIndex: p.integer(),
    channel: p.integer(),
    templateId: p.string().length(128),
    dueAt: p.datetime(),
    status: p.string().length(12),
    requestId: p.uuid().unique("email_follow_up_send_request_id_unique"),
    messageId: p.string().length(255).default(""),
    arm: p.smallint().nullable(),
    segmentKey: p.string().length(128).default(""),
    claimToken: p.uuid().nullable(),
    claimedAt: p.datetime().nullable(),
    claimedBy: p.string().length(100).default(""),
    attempts: p.integer().default(0),
    error: p.text().default(""),
    sentAt: p.datetime().nullable(),
    openedAt: p.datetime().nullable(),
    clickedAt: p.datetime().nullable(),
    repliedAt: p.datetime().nullable(),
    /** W3C trace context of the work that enrolled the contact (first step only). */
    traceContext: p.json<Record<string, string>>().nullable(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

/** One arm (hour of the week) of a segment's send-time bandit: Beta(1 + successes, 1 + trials − successes). */
export const EmailSendTimeArm = defineEntity({
  name: "EmailSendTimeArm",
  tableName: "email_send_time_arm",
  properties: {
    segmentKey: p.string().length(160).primary(),
    arm: p.smallint().primary(),
    trials: p.bigint("number").defaultRaw("0"),
    successes: p.bigint("number").defaultRaw("0"),
    updatedAt: p.datetime(),
  },
});

/** Follow-up and send-time entities. */
export const followUpEntities = [
  EmailFollowUpCadence,
  EmailFollowUpEnrollment,
  EmailFollowUpSend,
  EmailSendTimeArm,
] as const;
