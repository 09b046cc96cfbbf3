import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Jitter,
  type ManageRetriesRequest,
  ManageRetriesRequestSchema,
  type ManageRetriesResponse,
  RetryTargetKind,
  RpcCode,
} from "../../../gen/mesh/system/v1/system_service_pb.ts";
import type { Bus, Delivery, Running } from "../../../lib/bus/index.ts";
import { listDeadLetters, publishTask, startDeadLetterMover, taskSubject } from "../../../lib/bus/index.ts";
import { type Database, openDatabase } from "../../../lib/db/index.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { createCatalog } from "../../../lib/registry/index.ts";
import type { AgentDeps } from "../../../lib/server/index.ts";
import { domains } from "../../../servers/domains.ts";
import { eventually, isolatedBus, isolatedDatabase } from "../../../test/support/backbone.ts";
import { RetryPolicy } from "../entities.ts";
import { type ManageRetriesDeps, manageRetries, replayMessageId } from "./manage-retries.ts";

const log = createLogger("warn");
const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Action = NonNullable<MessageInitShape<typeof ManageRetriesRequestSchema>["action"]>;

/** A bus whose DLQ deletions fail: the process "crashes" after republishing, before removing the letter. */
function crashingBeforeDelete(bus: Bus): Bus {
  const bind = <T extends object>(target: T, override: Record<string, unknown>): T =>
    new Proxy(target, {
      get(t, k) {
        if (typeof k === "string" && k in override) return override[k];
        const v = Reflect.get(t, k, t);
        return typeof v === "function" ? v.bind(t) : v;
      },
    });
  const streams = bind(bus.jsm.streams, {
    deleteMessage: async () => {
      throw new Error("connection lost");
    },
  });
  return { ...bus, jsm: bind(bus.jsm, { streams }) };
}

/** A bus whose DLQ deletions fail after the first `n`: the process "crashes" midway through a batch. */
function crashingAfterDeletes(bus: Bus, n: number): Bus {
  let left = n;
  const streams = new Proxy(bus.jsm.streams, {
    get(t, k) {
      const v = Reflect.get(t, k, t);
      if (k !== "deleteMessage") return typeof v === "function" ? v.bind(t) : v;
      return async (...args: Parameters<typeof t.deleteMessage>) => {
        if (left-- <= 0) throw new Error("connection lost");
        return t.deleteMessage(...args);
      };
    },
  });
  const jsm = new Proxy(bus.jsm, {
    get: (t, k) => (k === "streams" ? streams : Reflect.get(t, k, t)),
  });
  return { ...bus, jsm };
}

/**
 * What the skill read from the DLQ: messages per fetch (asked and received), messages received in
 * all, whole payloads read and in flight, and the read-ahead — how far past a letter being acted on
 * (payload read or deleted) the reads had gone, in messages received after it: what was held
 * unprocessed.
 */
interface ReadProbe {
  maxAsked: number;
  maxReceived: number;
  received: number;
  /** Sequences received since the last reset. */
  seqs: number[];
  readAhead: number;
  payloadReads: number;
  inFlight: number;
  maxInFlight: number;
}

/** A bus that records every DLQ read into `probe`. */
function probedBus(bus: Bus, probe: ReadProbe): Bus {
  const actOn = (seq: number) => {
    probe.readAhead = Math.max(probe.readAhead, probe.seqs.filter((s) => s > seq).length);
  };
  const consumers = new Proxy(bus.js.consumers, {
    get(t, k) {
      const v = Reflect.get(t, k, t);
      if (k !== "get") return typeof v === "function" ? v.bind(t) : v;
      return async (...args: Parameters<typeof t.get>) => {
        const consumer = await t.get(...args);
        return new Proxy(consumer, {
          get(c, ck) {
            const cv = Reflect.get(c, ck, c);
            if (ck !== "fetch") return typeof cv === "function" ? cv.bind(c) : cv;
            return async (opts: Parameters<typeof c.fetch>[0]) => {
              probe.maxAsked = Math.max(probe.maxAsked, opts?.max_messages ?? 100);
              const messages = await c.fetch(opts);
              let received = 0;
              const counted = (async function* () {
                for await (const m of messages) {
                  probe.maxReceived = Math.max(probe.maxReceived, ++received);
                  probe.received++;
                  probe.seqs.push(m.seq);
                  yield m;
                }
              })();
              return Object.assign(counted, { close: () => messages.close(), stop: () => messages.stop() });
            };
          },
        });
      };
    },
  });
  const streams = new Proxy(bus.jsm.streams, {
    get(t, k) {
      const v = Reflect.get(t, k, t);
      if (k === "deleteMessage") {
        return (stream: string, seq: number, erase?: boolean) => {
          actOn(seq);
          return t.deleteMessage(stream, seq, erase);
        };
      }
      if (k !== "getMessage") return typeof v === "function" ? v.bind(t) : v;
      return async (...args: Parameters<typeof t.getMessage>) => {
        const seq = (args[1] as { seq?: number }).seq;
        if (seq !== undefined) actOn(seq);
        probe.payloadReads++;
        probe.maxInFlight = Math.max(probe.maxInFlight, ++probe.inFlight);
        try {
          return await t.getMessage(...args);
        } finally {
          probe.inFlight--;
        }
      };
    },
  });
  const js = new Proxy(bus.js, { get: (t, k) => (k === "consumers" ? consumers : Reflect.get(t, k, t)) });
  const jsm = new Proxy(bus.jsm, { get: (t, k) => (k === "streams" ? streams : Reflect.get(t, k, t)) });
  return { ...bus, js, jsm };
}

/** Mesh-Msg-Id of every message on `subject` of the events stream, in stream order. */
async function messageIdsOn(bus: Bus, subject: string): Promise<string[]> {
  const reader = await bus.js.consumers.get(bus.streams.events, { filter_subjects: subject, headers_only: true });
  const ids: string[] = [];
  try {
    let pending = (await reader.info(true)).num_pending;
    while (pending > 0) {
      const batch = await reader.fetch({ max_messages: Math.min(pending, 500), expires: 2000 });
      for await (const m of batch) {
        ids.push(m.headers?.get("Mesh-Msg-Id") ?? "");
        pending = m.info.pending;
        if (pending === 0) break;
      }
    }
  } finally {
    await reader.delete().catch(() => false);
  }
  return ids;
}

describe("integration.retry_management", () => {
  let dbHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let busHandle: Awaited<ReturnType<typeof isolatedBus>>;
  let db: Database;
  let bus: Bus;
  let deps: Omit<AgentDeps, "config" | "server" | "nodeId">;
  const running: Running[] = [];

  const request = (action: Action, requestId: string = randomUUID()): ManageRetriesRequest =>
    create(ManageRetriesRequestSchema, { requestId, action });
  const call = (action: Action, requestId?: string, d: ManageRetriesDeps = deps): Promise<ManageRetriesResponse> =>
    manageRetries(d, request(action, requestId));

  beforeAll(async () => {
    dbHandle = await isolatedDatabase();
    busHandle = await isolatedBus("technical");
    bus = busHandle.bus;
    db = await openDatabase({ url: dbHandle.url, domain: domains.technical, log });
    running.push(await startDeadLetterMover(bus));
    deps = { client: undefined as never, catalog: createCatalog(), log, now: () => new Date(), db, bus };
  });
  afterAll(async () => {
    for (const r of running) await r.stop();
    await db?.close();
    await busHandle?.dispose();
    await dbHandle?.drop();
  });

  describe("retry policies", () => {
    const subjectTarget = () => ({ kind: RetryTargetKind.SUBJECT, name: `${bus.prefix}.tasks.seo.>` });
    const setPolicy = (target: { kind: RetryTargetKind; name: string }, policy: Record<string, unknown>) =>
      call({ case: "setPolicy", value: { target, policy } });
    const rows = () => db.fork().find(RetryPolicy, {}, { orderBy: { targetKind: "asc", targetName: "asc" } });

    it("creates a policy with its defaults filled in, replaces it whole, and lists policies by kind and name", async () => {
      const first = await setPolicy(subjectTarget(), {
        maxAttempts: 5,
        baseBackoff: durationFromMs(1000),
        maxBackoff: durationFromMs(60_000),
        jitter: Jitter.FULL,
        retryableRpcCodes: [RpcCode.UNAVAILABLE, RpcCode.DEADLINE_EXCEEDED],
      });
      expect(first.result.case).toBe("setPolicy");
      const created = first.result.case === "setPolicy" ? first.result.value : undefined;
      expect(created?.created).toBe(true);
      expect(created?.entry?.revision).toBe(1n);
      expect(created?.entry?.target).toMatchObject(subjectTarget());
      const p1 = created?.entry?.policy;
      expect(p1?.maxAttempts).toBe(5);
      expect(durationMs(p1?.baseBackoff ?? durationFromMs(0))).toBe(1000);
      expect(durationMs(p1?.maxBackoff ?? durationFromMs(0))).toBe(60_000);
      expect(p1?.retryableRpcCodes).toEqual([RpcCode.UNAVAILABLE, RpcCode.DEADLINE_EXCEEDED]);
      expect(p1?.retryableHttpStatuses).toEqual([408, 429, 502, 503, 504]);
      expect(durationMs(p1?.maxRetryAfter ?? durationFromMs(0))).toBe(60_000); // defaults to max_backoff
      expect(p1?.maxElapsed).toBeUndefined();

      // Upsert: the second set replaces every field (unset ones take their defaults again).
      const second = await setPolicy(subjectTarget(), {
        maxAttempts: 3,
        baseBackoff: durationFromMs(250),
        jitter: Jitter.UNSPECIFIED,
        maxElapsed: durationFromMs(120_000),
        honourRetryAfter: true,
      });
      const replaced = second.result.case === "setPolicy" ? second.result.value : undefined;
      expect(replaced?.created).toBe(false);
      expect(replaced?.entry?.revision).toBe(2n);
      const p2 = replaced?.entry?.policy;
      expect(p2?.maxAttempts).toBe(3);
      expect(durationMs(p2?.baseBackoff ?? durationFromMs(0))).toBe(250);
      expect(durationMs(p2?.maxBackoff ?? durationFromMs(0))).toBe(30_000);
      expect(p2?.jitter).toBe(Jitter.FULL);
      expect(p2?.retryableRpcCodes).toEqual([
        RpcCode.UNAVAILABLE,
        RpcCode.DEADLINE_EXCEEDED,
        RpcCode.RESOURCE_EXHAUSTED,
        RpcCode.ABORTED,
      ]);
      expect(p2?.honourRetryAfter).toBe(true);
      expect(durationMs(p2?.maxElapsed ?? durationFromMs(0))).toBe(120_000);

      // Setting the same policy again changes nothing, so the revision stays.
      const same = await setPolicy(subjectTarget(), {
        maxAttempts: 3,
        baseBackoff: durationFromMs(250),
        maxElapsed: durationFromMs(120_000),
        honourRetryAfter: true,
      });
      expect(same.result.case === "setPolicy" ? same.result.value.entry?.revision : undefined).toBe(2n);

      await setPolicy({ kind: RetryTargetKind.SKILL, name: "seo.technical_audit" }, { maxAttempts: 4 });
      await setPolicy({ kind: RetryTargetKind.SUBJECT, name: `${bus.prefix}.tasks.*.urgent` }, { maxAttempts: 8 });
      await setPolicy({ kind: RetryTargetKind.SUBJECT, name: `${bus.prefix}.events.crm.>` }, { maxAttempts: 2 });

      const stored = await rows();
      expect(stored.map((r) => [r.targetKind, r.targetName, r.version])).toEqual([
        [RetryTargetKind.SUBJECT, `${bus.prefix}.events.crm.>`, 1],
        [RetryTargetKind.SUBJECT, `${bus.prefix}.tasks.*.urgent`, 1],
        [RetryTargetKind.SUBJECT, `${bus.prefix}.tasks.seo.>`, 2],
        [RetryTargetKind.SKILL, "seo.technical_audit", 1],
      ]);

      // Paging walks the same order; a kind narrows it.
      const names: string[] = [];
      let token = "";
      for (let pages = 0; pages < 10; pages++) {
        const res = await call({ case: "listPolicies", value: { pageSize: 3, pageToken: token } });
        const page = res.result.case === "listPolicies" ? res.result.value : undefined;
        names.push(...(page?.entries ?? []).map((e) => e.target?.name ?? ""));
        token = page?.nextPageToken ?? "";
        if (token === "") break;
      }
      expect(names).toEqual(stored.map((r) => r.targetName));
      const skills = await call({ case: "listPolicies", value: { kind: RetryTargetKind.SKILL } });
      const skillEntries = skills.result.case === "listPolicies" ? skills.result.value.entries : [];
      expect(skillEntries.map((e) => [e.target?.name, e.policy?.maxAttempts])).toEqual([["seo.technical_audit", 4]]);
    });

    it("refuses values the contract cannot check, naming the field, and changes nothing", async () => {
      const before = JSON.stringify(await rows());
      const refusals: [Promise<unknown>, string, RegExp][] = [
        [
          setPolicy({ kind: RetryTargetKind.SKILL, name: "seo.no_such_skill" }, { maxAttempts: 3 }),
          "set_policy.target.name",
          /no skill seo\.no_such_skill/,
        ],
        [
          setPolicy({ kind: RetryTargetKind.SKILL, name: "seo.link_outreach" }, { maxAttempts: 3 }),
          "set_policy.target.name",
          /not idempotent/,
        ],
        [
          setPolicy({ kind: RetryTargetKind.SUBJECT, name: "elsewhere.tasks.>" }, { maxAttempts: 3 }),
          "set_policy.target.name",
          /matches no task or event subject/,
        ],
        [
          setPolicy(subjectTarget(), { maxAttempts: 9, maxBackoff: durationFromMs(50) }),
          "set_policy.policy.max_backoff",
          /shorter than base_backoff, which defaults to 100 ms/,
        ],
        [
          setPolicy(subjectTarget(), { maxAttempts: 9, baseBackoff: durationFromMs(60_000) }),
          "set_policy.policy.base_backoff",
          /longer than max_backoff, which defaults to 30000 ms/,
        ],
        [
          setPolicy(subjectTarget(), { maxAttempts: 9, baseBackoff: { seconds: 1n, nanos: 500 } }),
          "set_policy.policy.base_backoff",
          /whole number of milliseconds/,
        ],
        [
          call({ case: "listPolicies", value: { pageToken: "not-a-token" } }),
          "list_policies.page_token",
          /not a page token/,
        ],
        [
          call({ case: "listDeadLetters", value: { pageToken: "bm9wZQ" } }),
          "list_dead_letters.page_token",
          /not a page token/,
        ],
        [
          call({
            case: "purge",
            value: { selection: { messageIds: ["x"], failedIn: { start: timestampFromDate(new Date()) } } },
          }),
          "purge.selection.failed_in",
          /only with subject_filter/,
        ],
        [
          call({
            case: "replay",
            value: { selection: { subjectFilter: ">" }, targetSubject: `${bus.prefix}.dlq.x.y` },
          }),
          "replay.target_subject",
          /task or event subject of this deployment/,
        ],
      ];
      for (const [promise, field, message] of refusals) {
        const err = await promise.then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err, field).toBeInstanceOf(InvalidInputError);
        expect((err as InvalidInputError).field).toBe(field);
        expect((err as Error).message).toMatch(message);
      }
      expect(JSON.stringify(await rows())).toBe(before);
    });
  });

  describe("dead letters", () => {
    let healthy = false;
    const seen: Delivery[] = [];
    const alpha = () => taskSubject(bus.prefix, "alpha", "normal");
    const beta = () => taskSubject(bus.prefix, "beta", "bulk");
    const seenIds = () => seen.filter((d) => d.deliveryCount === 1 && d.headers["Mesh-Replay-Of"]).map((d) => d.msgId);
    const list = async (value: Extract<Action, { case: "listDeadLetters" }>["value"] = {}) => {
      const res = await call({ case: "listDeadLetters", value });
      if (res.result.case !== "listDeadLetters") throw new Error("wrong result");
      return res.result.value;
    };

    beforeAll(async () => {
      const consume = async (durable: string, filter: string) =>
        running.push(
          await bus.consume(
            { stream: "tasks", durable, filter, maxDeliver: 2, backoffMs: [50], ackWaitMs: 2000 },
            async (d) => {
              seen.push(d);
              if (!healthy) throw new Error("downstream refused (password=hunter2)");
            },
          ),
        );
      await consume("rt_alpha", alpha());
      await consume("rt_beta", beta());
      for (const id of ["alpha-1", "alpha-2", "alpha-3"]) {
        await publishTask(bus, "alpha", "normal", bytes(`payload of ${id}`), id);
      }
      await publishTask(bus, "beta", "bulk", bytes("payload of beta-1"), "beta-1");
      await eventually(async () => ((await listDeadLetters(bus)).length === 4 ? true : undefined), 40_000);
    }, 60_000);

    it("lists dead letters newest first, filtered by subject and failure time, in pages", async () => {
      const all = await list();
      expect(all.totalCount).toBe(4n);
      expect(all.nextPageToken).toBe("");
      expect(new Set(all.deadLetters.map((d) => d.messageId))).toEqual(
        new Set(["alpha-1", "alpha-2", "alpha-3", "beta-1"]),
      );
      const times = all.deadLetters.map((d) => timestampDate(d.lastFailureTime ?? timestampFromDate(new Date(0))));
      expect([...times].sort((a, b) => b.getTime() - a.getTime())).toEqual(times);
      const a1 = all.deadLetters.find((d) => d.messageId === "alpha-1");
      expect(a1).toMatchObject({
        subject: alpha(),
        deliveryCount: 2,
        lastErrorCode: RpcCode.UNKNOWN,
        stream: bus.streams.tasks,
        consumer: "rt_alpha",
        sizeBytes: BigInt("payload of alpha-1".length),
      });
      expect(a1?.lastError).toMatch(/max deliveries \(2\) reached/);
      expect(a1?.streamSequence).toBeGreaterThan(0n);
      expect(a1?.traceId).toMatch(/^([0-9a-f]{32})?$/);

      const betaOnly = await list({ subjectFilter: `${bus.prefix}.tasks.beta.>` });
      expect(betaOnly.deadLetters.map((d) => [d.messageId, d.consumer])).toEqual([["beta-1", "rt_beta"]]);
      expect(betaOnly.totalCount).toBe(1n);
      const byLevel = await list({ subjectFilter: `${bus.prefix}.tasks.*.normal` });
      expect(byLevel.totalCount).toBe(3n);

      const future = { start: timestampFromDate(new Date(Date.now() + 60_000)) };
      expect((await list({ failedIn: future })).totalCount).toBe(0n);
      const recent = { start: timestampFromDate(new Date(Date.now() - 600_000)), end: timestampFromDate(new Date()) };
      expect((await list({ failedIn: recent })).totalCount).toBe(4n);

      const first = await list({ pageSize: 3 });
      expect(first.deadLetters).toHaveLength(3);
      expect(first.totalCount).toBe(4n);
      const second = await list({ pageSize: 3, pageToken: first.nextPageToken });
      expect(second.nextPageToken).toBe("");
      expect([...first.deadLetters, ...second.deadLetters].map((d) => d.messageId)).toEqual(
        all.deadLetters.map((d) => d.messageId),
      );
    });

    it("masks secrets in the last error", async () => {
      // The failing handler's message reaches the DLQ only for a permanent failure; simulate one.
      await bus.deadLetter(
        {
          subject: beta(),
          data: bytes("x"),
          headers: {},
          msgId: "secret-1",
          deliveryCount: 1,
          streamSeq: 999_999,
        },
        { stream: bus.streams.tasks, consumer: "rt_beta" },
        "login failed for postgres://app:s3cret@db/x with token=abc123 and Authorization: Bearer eyJhbGc.x.y",
      );
      const found = await eventually(async () => (await list()).deadLetters.find((d) => d.messageId === "secret-1"));
      expect(found.lastError).toBe(
        "login failed for postgres://app:***@db/x with token=*** and Authorization: Bearer ***",
      );
      const purged = await call({ case: "purge", value: { selection: { messageIds: ["secret-1"] } } });
      expect(purged.result.case === "purge" ? purged.result.value.purged : undefined).toBe(1n);
    });

    it("replays selected dead letters to their subject, where the now-healthy consumer takes them", async () => {
      healthy = true;
      const res = await call({ case: "replay", value: { selection: { messageIds: ["alpha-1", "nope"] } } });
      const r = res.result.case === "replay" ? res.result.value : undefined;
      expect(r?.notFoundMessageIds).toEqual(["nope"]);
      expect(r?.truncated).toBe(false);
      expect(r?.replayed.map((m) => [m.messageId, m.subject])).toEqual([["alpha-1", alpha()]]);
      const delivered = await eventually(() => seen.find((d) => d.msgId === "alpha-1" && d.headers["Mesh-Replay-Of"]));
      expect(delivered.deliveryCount).toBe(1);
      expect(text(delivered.data)).toBe("payload of alpha-1");
      expect(BigInt(delivered.streamSeq)).toBe(r?.replayed[0]?.streamSequence);
      expect((await list()).deadLetters.map((d) => d.messageId)).not.toContain("alpha-1");
      // Not found once replayed.
      const again = await call({ case: "replay", value: { selection: { messageIds: ["alpha-1"] } } });
      expect(again.result.case === "replay" ? again.result.value.notFoundMessageIds : undefined).toEqual(["alpha-1"]);
    });

    it("drops a retried replay with the same request id through JetStream dedup (no second delivery)", async () => {
      const requestId = randomUUID();
      const action: Action = { case: "replay", value: { selection: { messageIds: ["alpha-2"] } } };
      const [letter] = await listDeadLetters(bus, { msgIds: ["alpha-2"] });
      // The first attempt republishes, then fails before removing the letter from the DLQ.
      await expect(call(action, requestId, { ...deps, bus: crashingBeforeDelete(bus) })).rejects.toThrow(
        /connection lost/,
      );
      await eventually(() => (seenIds().includes("alpha-2") ? true : undefined));
      expect((await list()).deadLetters.map((d) => d.messageId)).toContain("alpha-2");

      const retried = await call(action, requestId);
      const r = retried.result.case === "replay" ? retried.result.value : undefined;
      expect(r?.replayed.map((m) => m.messageId)).toEqual(["alpha-2"]);
      const first = seen.find((d) => d.msgId === "alpha-2" && d.headers["Mesh-Replay-Of"]);
      expect(r?.replayed[0]?.streamSequence).toBe(BigInt(first?.streamSeq ?? 0)); // the first publish's sequence
      expect(first?.headers["Nats-Msg-Id"]).toBe(replayMessageId(requestId, letter?.seq ?? 0));
      await sleep(500);
      expect(seenIds().filter((id) => id === "alpha-2")).toHaveLength(1);
      expect((await list()).deadLetters.map((d) => d.messageId)).not.toContain("alpha-2");
    });

    it("replays by subject filter onto another subject, at most max_messages", async () => {
      const res = await call({
        case: "replay",
        value: { selection: { subjectFilter: `${bus.prefix}.tasks.>` }, targetSubject: alpha(), maxMessages: 1 },
      });
      const r = res.result.case === "replay" ? res.result.value : undefined;
      expect(r?.truncated).toBe(true);
      const [moved] = r?.replayed ?? [];
      expect(moved?.subject).toBe(alpha());
      const remaining = (await list()).deadLetters.map((d) => d.messageId);
      expect(remaining).toHaveLength(1);
      expect(remaining).not.toContain(moved?.messageId);
      await eventually(() => (seenIds().includes(moved?.messageId) ? true : undefined));
    });

    it("purges selected dead letters for good", async () => {
      const [last] = (await list()).deadLetters;
      const old = { end: timestampFromDate(new Date(Date.now() - 600_000)) };
      const none = await call({
        case: "purge",
        value: { selection: { subjectFilter: ">", failedIn: old, messageIds: ["gone-1"] } },
      });
      const n = none.result.case === "purge" ? none.result.value : undefined;
      expect(n?.purged).toBe(0n);
      expect(n?.notFoundMessageIds).toEqual(["gone-1"]);

      const res = await call({ case: "purge", value: { selection: { subjectFilter: `${bus.prefix}.tasks.>` } } });
      const p = res.result.case === "purge" ? res.result.value : undefined;
      expect(p?.purged).toBe(1n);
      expect(p?.notFoundMessageIds).toEqual([]);
      const after = await list();
      expect(after.totalCount).toBe(0n);
      const info = await bus.jsm.streams.info(bus.streams.dlq);
      expect(info.state.messages).toBe(0);
      // Nothing was republished by a purge.
      await sleep(300);
      expect(seenIds()).not.toContain(last?.messageId);
    });
  });

  describe("a dead-letter queue larger than one batch", () => {
    const LETTERS = 2500;
    const BATCH = 500;
    let handle: Awaited<ReturnType<typeof isolatedBus>>;
    let big: Bus;
    let probe: ReadProbe;
    let bigDeps: ManageRetriesDeps;
    const even = () => `${big.prefix}.tasks.even.normal`;
    const odd = () => `${big.prefix}.tasks.odd.normal`;
    const ids = (from: number, step: number, count: number) =>
      Array.from({ length: count }, (_, i) => `m-${from + i * step}`);
    const resetProbe = () =>
      Object.assign(probe, {
        maxAsked: 0,
        maxReceived: 0,
        received: 0,
        seqs: [],
        readAhead: 0,
        payloadReads: 0,
        maxInFlight: 0,
      });
    const expectOneBatchAtATime = () => {
      // Never more than one batch read ahead of the letter being acted on, nor asked or received at once.
      expect(probe.readAhead).toBeLessThan(BATCH);
      expect(probe.maxAsked).toBeGreaterThan(0);
      expect(probe.maxAsked).toBeLessThanOrEqual(BATCH);
      expect(probe.maxReceived).toBeLessThanOrEqual(BATCH);
      expect(probe.maxInFlight).toBeLessThanOrEqual(1);
    };
    const listAll = async (subjectFilter = "", pageSize = 1000) => {
      const out: string[] = [];
      const totals: bigint[] = [];
      let pageToken = "";
      for (let pages = 0; pages < 100; pages++) {
        const res = await call(
          { case: "listDeadLetters", value: { subjectFilter, pageSize, pageToken } },
          undefined,
          bigDeps,
        );
        if (res.result.case !== "listDeadLetters") throw new Error("wrong result");
        out.push(...res.result.value.deadLetters.map((d) => d.messageId));
        totals.push(res.result.value.totalCount);
        pageToken = res.result.value.nextPageToken;
        if (pageToken === "") break;
      }
      return { ids: out, totals };
    };

    beforeAll(async () => {
      handle = await isolatedBus("technical");
      big = handle.bus;
      const payload = bytes("x".repeat(64));
      for (let i = 0; i < LETTERS; i++) {
        await big.deadLetter(
          {
            subject: i % 2 === 0 ? even() : odd(),
            data: payload,
            headers: {},
            msgId: `m-${i}`,
            deliveryCount: 3,
            streamSeq: i + 1,
          },
          { stream: big.streams.tasks, consumer: i % 2 === 0 ? "even" : "odd" },
          `failed ${i}`,
        );
      }
      probe = {
        maxAsked: 0,
        maxReceived: 0,
        received: 0,
        seqs: [],
        readAhead: 0,
        payloadReads: 0,
        inFlight: 0,
        maxInFlight: 0,
      };
      bigDeps = { ...deps, bus: probedBus(big, probe), dlqBatchSize: BATCH };
    }, 120_000);
    afterAll(async () => {
      await handle?.dispose();
    });

    it("lists every dead letter exactly once, newest first, reading headers one batch at a time", async () => {
      resetProbe();
      const all = await listAll();
      expect(all.ids).toEqual(ids(LETTERS - 1, -1, LETTERS));
      expect(all.totals).toEqual([2500n, 2500n, 2500n]);
      const oddOnly = await listAll(`${big.prefix}.tasks.odd.>`, 300);
      expect(oddOnly.ids).toEqual(ids(LETTERS - 1, -2, LETTERS / 2));
      expect(new Set(oddOnly.totals)).toEqual(new Set([1250n]));
      expectOneBatchAtATime();
      expect(probe.payloadReads).toBe(0); // a listing reads no payload

      // An unfiltered page reads down from its cursor only as far as it needs: one batch for 100.
      let pageToken = "";
      for (let pages = 0; pages < 3; pages++) {
        const before = probe.received;
        const res = await call({ case: "listDeadLetters", value: { pageSize: 100, pageToken } }, undefined, bigDeps);
        const page = res.result.case === "listDeadLetters" ? res.result.value : undefined;
        expect(page?.deadLetters.map((d) => d.messageId)).toEqual(ids(LETTERS - 1 - pages * 100, -1, 100));
        expect(probe.received - before).toBeLessThanOrEqual(BATCH);
        pageToken = page?.nextPageToken ?? "";
      }
    });

    it("replays a selection in batches, each letter once, also when a retry follows a crash midway", async () => {
      resetProbe();
      const requestId = randomUUID();
      const target = `${big.prefix}.events.test.replayed`;
      const action: Action = {
        case: "replay",
        value: {
          selection: { subjectFilter: `${big.prefix}.tasks.even.>` },
          targetSubject: target,
          maxMessages: 100_000,
        },
      };
      // The first attempt republishes 301 letters but removes only 300 from the DLQ, then fails.
      await expect(
        call(action, requestId, { ...bigDeps, bus: crashingAfterDeletes(bigDeps.bus, 300) }),
      ).rejects.toThrow(/connection lost/);
      expectOneBatchAtATime();
      // The retry (same request id) scans afresh.
      resetProbe();
      const retried = await call(action, requestId, bigDeps);
      expectOneBatchAtATime();
      const r = retried.result.case === "replay" ? retried.result.value : undefined;
      expect(r?.truncated).toBe(false);
      expect(r?.replayed).toHaveLength(LETTERS / 2 - 300);
      expect(r?.replayed[0]?.messageId).toBe("m-600");
      // Every even letter reached the target exactly once, in DLQ order.
      expect(await messageIdsOn(big, target)).toEqual(ids(0, 2, LETTERS / 2));
      expect((await listAll()).ids).toEqual(ids(LETTERS - 1, -2, LETTERS / 2));
    });

    it("replays at most max_messages, oldest first, and says the selection was truncated", async () => {
      const target = `${big.prefix}.events.test.some`;
      const res = await call(
        {
          case: "replay",
          value: { selection: { subjectFilter: `${big.prefix}.tasks.odd.>` }, targetSubject: target, maxMessages: 100 },
        },
        undefined,
        bigDeps,
      );
      const r = res.result.case === "replay" ? res.result.value : undefined;
      expect(r?.truncated).toBe(true);
      expect(r?.replayed.map((m) => m.messageId)).toEqual(ids(1, 2, 100));
      expect(await messageIdsOn(big, target)).toEqual(ids(1, 2, 100));
    });

    it("purges a selection in batches, each letter once", async () => {
      resetProbe();
      const res = await call(
        {
          case: "purge",
          value: { selection: { subjectFilter: `${big.prefix}.tasks.odd.>`, messageIds: ["m-1", "m-0"] } },
        },
        undefined,
        bigDeps,
      );
      const p = res.result.case === "purge" ? res.result.value : undefined;
      expect(p?.purged).toBe(BigInt(LETTERS / 2 - 100));
      // Both were replayed before, so neither is a dead letter any more.
      expect(p?.notFoundMessageIds).toEqual(["m-1", "m-0"]);
      expect((await big.jsm.streams.info(big.streams.dlq)).state.messages).toBe(0);
      expectOneBatchAtATime();
      expect(probe.payloadReads).toBe(0); // a purge reads no payload
    });
  });
});
