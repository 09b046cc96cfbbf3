/**
 * Tables every server schema has: the transactional outbox, the inbox of processed messages, the
 * idempotency records of skill calls and the usage of the model provider (lib/model).
 */
import { defineEntity, p } from "@mikro-orm/postgresql";

/** An event or task written in the same transaction as the change it announces; the relay publishes it. */
export const OutboxMessage = defineEntity({
  name: "OutboxMessage",
  tableName: "outbox",
  properties: {
    id: p.bigint("number").primary().autoincrement(),
    /** NATS subject, prefix included. */
    subject: p.string().length(255),
    /** Nats-Msg-Id: JetStream drops a second publish with the same id inside the dedup window. */
    msgId: p.string().length(200).unique(),
    payload: p.blob(),
    /** NATS headers to send, trace context included. */
    headers: p.json<Record<string, string>>(),
    createdAt: p.datetime().onCreate(() => new Date()),
  },
});

/** A message a durable consumer has applied; written in the handler's transaction (effectively once). */
export const InboxMessage = defineEntity({
  name: "InboxMessage",
  tableName: "inbox",
  properties: {
    consumer: p.string().length(200).primary(),
    msgId: p.string().length(200).primary(),
    subject: p.string().length(255),
    processedAt: p.datetime().onCreate(() => new Date()),
  },
});

/** The stored result of a skill call made with an idempotency key (request_id or header). */
export const IdempotencyRecord = defineEntity({
  name: "IdempotencyRecord",
  tableName: "idempotency_record",
  properties: {
    /** `<procedure>:<key>`. */
    id: p.string().length(400).primary(),
    procedure: p.string().length(255),
    /** SHA-256 of the request bytes: a replay with other input is refused. */
    requestHash: p.string().length(64),
    response: p.blob(),
    /** Replays answered from this record. */
    replays: p.integer().default(0),
    createdAt: p.datetime().onCreate(() => new Date()),
  },
});

/**
 * One call to the model provider (lib/model): the tokens it used and what they cost, per skill and
 * workflow run. Budgets per run and per day are summed from these rows.
 */
export const ModelUsageRecord = defineEntity({
  name: "ModelUsageRecord",
  tableName: "model_usage",
  indexes: [{ properties: ["runId", "createdAt"] }, { properties: ["createdAt"] }],
  properties: {
    id: p.bigint("number").primary().autoincrement(),
    /** The skill that made the call (`agent.Method` or any label its caller chose). */
    skill: p.string().length(255),
    /** Workflow run the call belongs to; empty outside a run. */
    runId: p.string().length(100),
    /** `builtin` or `openai`. */
    provider: p.string().length(32),
    model: p.string().length(255),
    promptTokens: p.integer(),
    completionTokens: p.integer(),
    /** Cost of the call in the configured price's currency. */
    cost: p.double(),
    /** True when the tokens were estimated (~4 characters a token), not reported by the model server. */
    estimated: p.boolean(),
    createdAt: p.datetime(),
  },
});

/** Entities of every schema. */
export const frameworkEntities = [OutboxMessage, InboxMessage, IdempotencyRecord, ModelUsageRecord] as const;
