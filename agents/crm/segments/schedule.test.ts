import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type SegmentMembershipChanged as ChangedMessage,
  SegmentMembershipChange,
} from "../../../gen/mesh/crm/v1/crm_events_pb.ts";
import {
  BooleanOperator,
  ComparisonOperator,
  type ConditionSchema,
  ContactField,
  InteractionType,
  ListSegmentMembersRequestSchema,
  SaveSegmentRequestSchema,
  TrackInteractionRequestSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { decodeEvent, type Running } from "../../../lib/bus/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { domains } from "../../../servers/domains.ts";
import { type BackboneFixture, eventually, openBackboneFixture } from "../../../test/support/backbone.ts";
import { CrmContact } from "../entities.ts";
import { SegmentMembershipChanged } from "../events.ts";
import { trackInteraction } from "../skills/track-interaction.ts";
import type { RecheckLimits } from "./next-change.ts";
import { createSegmentScheduler } from "./schedule.ts";
import { listSegmentMembers, reevaluateContact, saveSegment } from "./stored.ts";

type ConditionInit = MessageInitShape<typeof ConditionSchema>;
const day = 86_400_000;
const start = Date.parse("2025-06-01T00:00:00Z");
let clock = start;
const now = () => new Date(clock);
const recheck: RecheckLimits = { minMs: 60_000, maxMs: 90 * day };

const X = "00000000-0000-4000-8000-0000000000a1";
const Y = "00000000-0000-4000-8000-0000000000b2";

const views = (minCount: number, withinDays: number | undefined): ConditionInit => ({
  node: {
    case: "behaviour",
    value: {
      interactionType: InteractionType.PAGE_VIEW,
      minCount,
      ...(withinDays === undefined ? {} : { within: durationFromMs(withinDays * day) }),
    },
  },
});
const city = (name: string): ConditionInit => ({
  node: {
    case: "field",
    value: {
      field: { ref: { case: "contactField", value: ContactField.CITY } },
      comparison: ComparisonOperator.EQUALS,
      values: [{ kind: { case: "stringValue", value: name } }],
    },
  },
});
const createdWithin = (days: number): ConditionInit => ({
  node: {
    case: "field",
    value: {
      field: { ref: { case: "contactField", value: ContactField.CREATED_AT } },
      comparison: ComparisonOperator.WITHIN_LAST,
      values: [{ kind: { case: "durationValue", value: durationFromMs(days * day) } }],
    },
  },
});

describe("scheduled re-evaluation of time-windowed segments on PostgreSQL and NATS", () => {
  let fx: BackboneFixture;
  let collector: Running | undefined;
  const events: ChangedMessage[] = [];
  const log = createLogger("warn");
  const deps = () => ({ db: fx.db, bus: fx.bus, now, recheck });
  const scheduler = () => createSegmentScheduler({ ...deps(), log, batch: 50 });
  const save = (key: string, condition: ConditionInit) =>
    saveSegment(
      deps(),
      create(SaveSegmentRequestSchema, { requestId: randomUUID(), segment: { key, name: key, condition } }),
    );
  const view = (contactId: string, at: number) =>
    trackInteraction(
      deps(),
      create(TrackInteractionRequestSchema, {
        requestId: randomUUID(),
        interaction: {
          eventId: randomUUID(),
          contactId,
          type: InteractionType.PAGE_VIEW,
          occurredAt: timestampFromDate(new Date(at)),
        },
      }),
    );
  const stored = async (key: string) => {
    const rows = (await fx.db
      .fork()
      .execute(`select next_evaluation_at, evaluated_at from "operations"."crm_segment" where key = ?`, [key])) as {
      next_evaluation_at: Date | null;
      evaluated_at: Date | null;
    }[];
    const r = rows[0];
    return {
      next: r?.next_evaluation_at == null ? null : new Date(r.next_evaluation_at).getTime(),
      evaluated: r?.evaluated_at == null ? null : new Date(r.evaluated_at).getTime(),
    };
  };
  const members = async (key: string) =>
    (await listSegmentMembers(deps(), create(ListSegmentMembersRequestSchema, { key }))).members.map(
      (m) => m.contactId,
    );

  beforeAll(async () => {
    fx = await openBackboneFixture(domains.operations, "crm-segment-schedule-test");
    const em = fx.db.fork();
    for (const [id, c] of [
      [X, "Austin"],
      [Y, "Dallas"],
    ] as const) {
      em.create(CrmContact, {
        id,
        email: null,
        city: c,
        region: "TX",
        attributes: [],
        createdAt: new Date(start - 100 * day),
        updatedAt: new Date(start - 100 * day),
      } as never);
    }
    await em.flush();
    collector = await fx.bus.consume(
      {
        stream: "events",
        durable: "test_schedule_collector",
        filter: `${fx.bus.prefix}.events.crm.segment_membership_changed`,
      },
      async (d) => {
        events.push(decodeEvent(SegmentMembershipChanged, d));
      },
    );
  });
  afterAll(async () => {
    await collector?.stop();
    await fx?.dispose();
  });

  it("drops a member when its views leave the window, at the exact due time, announcing it once", async () => {
    clock = start;
    await view(X, start - 5 * day);
    await view(X, start - 3 * day);
    const res = await save("recent-viewers", views(2, 30));
    expect([res.joinedCount, res.leftCount]).toEqual([1n, 0n]);
    // Due when X's oldest in-window view leaves the 30-day window; GetSegment and friends show it.
    expect((await stored("recent-viewers")).next).toBe(start + 25 * day);
    expect(res.segment?.nextEvaluationAt).toEqual(timestampFromDate(new Date(start + 25 * day)));

    const worker = scheduler();
    clock = start + 25 * day - 1;
    expect((await worker.round()).evaluated).toEqual([]);
    expect(await members("recent-viewers")).toEqual([X]);

    clock = start + 25 * day;
    const r = await worker.round();
    expect(r.evaluated).toEqual(["recent-viewers"]);
    expect([r.joined, r.left]).toEqual([0, 1]);
    expect(await members("recent-viewers")).toEqual([]);
    // Nobody is left to leave and no view is dated ahead: the safety net's interval.
    expect((await stored("recent-viewers")).next).toBe(clock + recheck.maxMs);
    expect((await worker.round()).evaluated).toEqual([]);

    const left = await eventually(() =>
      events.find((e) => e.segmentKey === "recent-viewers" && e.change === SegmentMembershipChange.LEFT),
    );
    expect(left).toMatchObject({ contactId: X, cause: "schedule", market: "austin|tx" });
    // A later change proves the earlier ones were delivered: still exactly one leave, recorded once.
    await save("dallas", city("Dallas"));
    await eventually(() => events.find((e) => e.segmentKey === "dallas" && e.contactId === Y));
    expect(
      events.filter((e) => e.segmentKey === "recent-viewers").map((e) => [e.contactId, e.change, e.cause]),
    ).toEqual([
      [X, SegmentMembershipChange.JOINED, "full"],
      [X, SegmentMembershipChange.LEFT, "schedule"],
    ]);
    const history = (await fx.db
      .fork()
      .execute(
        `select action, cause from "operations"."crm_segment_membership_change" where segment_key = ? and contact_id = ? order by changed_at`,
        ["recent-viewers", X],
      )) as { action: string; cause: string }[];
    expect(history).toEqual([
      { action: "joined", cause: "full" },
      { action: "left", cause: "schedule" },
    ]);
  });

  it("never schedules a segment whose rules do not depend on time", async () => {
    clock = start + 30 * day;
    await save("dallas", city("Dallas"));
    // A count over all history depends on time only through views dated ahead; there are none.
    await save("ever-viewed", views(1, undefined));
    const before = [await stored("dallas"), await stored("ever-viewed")];
    expect(before.map((s) => s.next)).toEqual([null, null]);
    clock = start + 1000 * day;
    const r = await scheduler().round();
    expect(r.evaluated).not.toContain("dallas");
    expect(r.evaluated).not.toContain("ever-viewed");
    expect([await stored("dallas"), await stored("ever-viewed")]).toEqual(before);
  });

  it("brings the due time forward when an event adds a back-dated interaction", async () => {
    clock = start + 2000 * day;
    await save("viewed-this-month", views(1, 30));
    expect(await members("viewed-this-month")).toEqual([]);
    expect((await stored("viewed-this-month")).next).toBe(clock + recheck.maxMs);
    // Y's view, tracked today, happened 29 days ago: it leaves the window tomorrow.
    await view(Y, clock - 29 * day);
    const changes = await fx.db.transaction((em) => reevaluateContact(deps(), em, Y, { subject: "test", msgId: "t1" }));
    expect(changes).toContainEqual({ key: "viewed-this-month", change: "joined" });
    expect((await stored("viewed-this-month")).next).toBe(clock + day);
    clock += day;
    const r = await scheduler().round();
    expect(r.evaluated).toContain("viewed-this-month");
    expect(await members("viewed-this-month")).toEqual([]);
  });

  it("follows relative dates and negated windows: members age out and non-members age in", async () => {
    clock = start + 6000 * day;
    const Z = "00000000-0000-4000-8000-0000000000c3";
    const em = fx.db.fork();
    em.create(CrmContact, {
      id: Z,
      email: null,
      city: "Houston",
      region: "TX",
      attributes: [],
      createdAt: new Date(clock - 2 * day),
      updatedAt: new Date(clock - 2 * day),
    } as never);
    await em.flush();
    await view(Z, clock - 10 * day);
    expect((await save("new-this-week", createdWithin(7))).joinedCount).toBe(1n);
    expect((await stored("new-this-week")).next).toBe(clock + 5 * day);
    // "Not viewed in 30 days": Z is out until its view leaves the window, then joins.
    await save("lapsed", {
      node: { case: "group", value: { booleanOperator: BooleanOperator.NOT, conditions: [views(1, 30)] } },
    });
    expect(await members("lapsed")).toEqual([X, Y]);
    expect((await stored("lapsed")).next).toBe(clock + 20 * day);
    const t0 = clock;
    clock = t0 + 5 * day;
    const r1 = await scheduler().round();
    expect(r1.evaluated).toContain("new-this-week");
    expect(r1.evaluated).not.toContain("lapsed");
    expect(await members("new-this-week")).toEqual([]);
    clock = t0 + 20 * day;
    expect((await scheduler().round()).evaluated).toContain("lapsed");
    expect(await members("lapsed")).toEqual([X, Y, Z]);
    const announced = await eventually(() => {
      const got = events.filter(
        (e) => e.contactId === Z && e.cause === "schedule" && ["lapsed", "new-this-week"].includes(e.segmentKey),
      );
      return got.length >= 2 ? got : undefined;
    });
    expect(announced.map((e) => [e.segmentKey, e.change]).sort()).toEqual([
      ["lapsed", SegmentMembershipChange.JOINED],
      ["new-this-week", SegmentMembershipChange.LEFT],
    ]);
  });

  it("lets two workers share due segments without evaluating one twice", async () => {
    clock = start + 3000 * day;
    const keys = Array.from({ length: 8 }, (_, i) => `new-contacts-${i}`);
    for (const k of keys) await save(k, createdWithin(7));
    clock += recheck.maxMs;
    const [a, b] = await Promise.all([scheduler().round(), scheduler().round()]);
    const all = [...a.evaluated, ...b.evaluated];
    expect(new Set(all).size).toBe(all.length);
    for (const k of keys) expect(all).toContain(k);
  });

  it("skips a segment a (dying) worker holds, and picks it up after that worker's connection is gone", async () => {
    clock = start + 4000 * day;
    await save("held", createdWithin(7));
    clock += recheck.maxMs;
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => {
      locked = r;
    });
    let kill!: () => void;
    const killed = new Promise<void>((r) => {
      kill = r;
    });
    // A worker that claimed the segment and dies mid-evaluation: its transaction never commits.
    const dying = fx.db
      .transaction(async (em) => {
        await em.execute(`select key from "operations"."crm_segment" where key = ? for no key update`, ["held"]);
        locked();
        await killed;
        throw new Error("killed");
      })
      .catch(() => undefined);
    await isLocked;
    const evaluatedBefore = (await stored("held")).evaluated;
    expect((await scheduler().round()).evaluated).not.toContain("held");
    kill();
    await dying;
    expect((await stored("held")).evaluated).toBe(evaluatedBefore);
    // A restarted instance (a new scheduler, nothing in memory) finds it due in the table.
    expect((await scheduler().round()).evaluated).toContain("held");
    expect((await stored("held")).evaluated).toBe(clock);
  });

  it("runs rounds on its own once started, until stopped", async () => {
    clock = start + 5000 * day;
    await save("polled", createdWithin(7));
    clock += recheck.maxMs;
    const running = createSegmentScheduler({ ...deps(), log, pollMs: 50 }).start();
    try {
      await eventually(async () => ((await stored("polled")).evaluated === clock ? true : undefined));
    } finally {
      await running.stop();
    }
  });
});
