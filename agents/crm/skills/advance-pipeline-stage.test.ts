import { randomUUID } from "node:crypto";
import { create, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AdvancePipelineStageRequestSchema,
  AdvancePipelineStageRequestSchema as AdvanceSchema,
  ComparisonOperator,
  CreateDealRequestSchema,
  DealField,
  InteractionType,
  LifecycleStage,
  ListDealStageChangesRequestSchema,
  type PipelineDefinition,
  PipelineDefinitionSchema,
  PipelineStageChangedSchema,
  PipelineTriggerFiredSchema,
  SavePipelineRequestSchema,
  StageOutcome,
  TriggerOutcome,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { Database } from "../../../lib/db/index.ts";
import { ConflictError, FailedPreconditionError, InvalidInputError } from "../../../lib/errors/index.ts";
import { domains } from "../../../servers/domains.ts";
import { type BackboneFixture, eventually, openBackboneFixture } from "../../../test/support/backbone.ts";
import { CrmContact, CrmDeal, CrmDealStageChange, CrmInteraction } from "../entities.ts";
import { createDeal, listDealStageChanges, savePipeline } from "../pipeline/deals.ts";
import { advancePipelineStage } from "./advance-pipeline-stage.ts";

type AdvanceInit = MessageInitShape<typeof AdvancePipelineStageRequestSchema>;

const start = Date.parse("2025-01-15T12:00:00Z");
let clock = start;
const now = (): Date => new Date(clock);
const hour = 3600_000;

describe("crm.pipeline_advancement on PostgreSQL and NATS", () => {
  let fx: BackboneFixture;
  let db: Database;
  let deps: { db: Database; bus: BackboneFixture["bus"]; now: () => Date };

  beforeAll(async () => {
    fx = await openBackboneFixture(domains.operations, "crm-pipeline");
    db = fx.db;
    deps = { db, bus: fx.bus, now };
  });
  afterAll(async () => {
    await fx?.dispose();
  });

  async function contact(fields: { email?: string; phone?: string } = {}): Promise<string> {
    const em = db.fork();
    const id = randomUUID();
    em.create(CrmContact, {
      id,
      email: fields.email ?? `${id}@example.com`,
      phone: fields.phone ?? "",
      attributes: [],
      createdAt: now(),
      updatedAt: now(),
    });
    await em.flush();
    return id;
  }
  async function deal(contactId: string, more: MessageInitShape<typeof CreateDealRequestSchema> = {}) {
    const req = create(CreateDealRequestSchema, more);
    req.requestId = randomUUID();
    req.contactId = contactId;
    req.name = "Mary – Austin";
    const res = await createDeal(deps, req);
    return res.deal as NonNullable<typeof res.deal>;
  }
  const advance = (init: AdvanceInit) =>
    advancePipelineStage(deps, create(AdvanceSchema, { requestId: randomUUID(), ...init }));
  const history = (dealId: string) =>
    db.fork().find(CrmDealStageChange, { deal: dealId }, { orderBy: { changedAt: "asc" } });
  const dealRow = (id: string) => db.fork().findOneOrFail(CrmDeal, { id });

  /** Every event of the stream about `dealId`, oldest first. */
  async function eventsOf(dealId: string) {
    await fx.relay.flush();
    const outbox = async () =>
      Number((await db.fork().getConnection().execute(`select count(*) as n from "operations"."outbox"`))[0]?.n);
    await eventually(async () => ((await outbox()) === 0 ? true : undefined));
    const n = (await fx.bus.jsm.streams.info(fx.bus.streams.events)).state.messages;
    const out: Array<{ subject: string; msgId: string | undefined; data: Uint8Array }> = [];
    for (let seq = 1; seq <= n; seq++) {
      const m = await fx.bus.jsm.streams.getMessage(fx.bus.streams.events, { seq });
      if (m === null) continue;
      const about = m.subject.endsWith("pipeline_stage_changed")
        ? fromBinary(PipelineStageChangedSchema, m.data).dealId
        : fromBinary(PipelineTriggerFiredSchema, m.data).dealId;
      if (about === dealId) out.push({ subject: m.subject, msgId: m.header.get("Nats-Msg-Id"), data: m.data });
    }
    return out;
  }

  it("opens a deal in the first open stage with one history row and one event", async () => {
    const c = await contact();
    const d = await deal(c, { amount: { currencyCode: "USD", units: 5400n } });
    expect(d).toMatchObject({ pipelineId: "senior-living", stage: "enquiry", outcome: StageOutcome.OPEN, version: 1n });
    const h = await history(d.id);
    expect(h.map((r) => [r.fromStage, r.toStage, r.dealVersion])).toEqual([["", "enquiry", 1]]);
    const events = await eventsOf(d.id);
    expect(events.map((e) => e.subject)).toEqual([`${fx.bus.prefix}.events.crm.pipeline_stage_changed`]);
  });

  it("moves enquiry → qualified, fires its triggers through the outbox and appends history", async () => {
    const c = await contact({ phone: "+15125550143" });
    const d = await deal(c, { ownerEmail: "sam.rivera@example.com" });
    clock += hour;
    const requestId = randomUUID();
    const res = await advancePipelineStage(
      deps,
      create(AdvanceSchema, {
        requestId,
        dealId: d.id,
        target: { case: "targetStage", value: "qualified" },
        expectedVersion: 1n,
      }),
    );
    expect(res).toMatchObject({ previousStage: "enquiry", newStage: "qualified", advanced: true, version: 2n });
    expect(res.guards.map((g) => [g.guardId, g.passed])).toEqual([["reachable", true]]);
    expect(res.triggers.map((t) => [t.triggerId, t.outcome])).toEqual([
      ["mark-sql", TriggerOutcome.FIRED],
      ["nurture", TriggerOutcome.FIRED],
    ]);
    const stored = await dealRow(d.id);
    expect(stored).toMatchObject({ stage: "qualified", version: 2 });
    expect(stored.stageEnteredAt.getTime()).toBe(clock);
    expect((await db.fork().findOneOrFail(CrmContact, { id: c })).lifecycleStage).toBe(
      LifecycleStage.SALES_QUALIFIED_LEAD,
    );
    expect((await history(d.id)).map((r) => [r.fromStage, r.toStage, r.dealVersion])).toEqual([
      ["", "enquiry", 1],
      ["enquiry", "qualified", 2],
    ]);
    const events = await eventsOf(d.id);
    expect(events.map((e) => e.subject.split(".").at(-1))).toEqual([
      "pipeline_stage_changed",
      "pipeline_trigger_fired",
      "pipeline_trigger_fired",
      "pipeline_stage_changed",
    ]);
    const nurture = events
      .filter((e) => e.subject.endsWith("pipeline_trigger_fired"))
      .map((e) => fromBinary(PipelineTriggerFiredSchema, e.data))
      .find((e) => e.triggerId === "nurture");
    expect(nurture).toMatchObject({
      contactId: c,
      fromStage: "enquiry",
      toStage: "qualified",
      ownerEmail: "sam.rivera@example.com",
    });
    expect(nurture?.trigger?.action).toEqual({ case: "startSequenceId", value: "qualified-nurture" });

    // A replay of the request id answers the recorded change and does nothing again.
    clock += hour;
    const again = await advancePipelineStage(
      deps,
      create(AdvanceSchema, {
        requestId,
        dealId: d.id,
        target: { case: "targetStage", value: "qualified" },
        expectedVersion: 1n,
      }),
    );
    expect(again).toEqual(res);
    expect(await history(d.id)).toHaveLength(2);
    expect(await eventsOf(d.id)).toHaveLength(4);
  });

  it("refuses a transition the pipeline lacks with FAILED_PRECONDITION naming both stages, writing nothing", async () => {
    const d = await deal(await contact());
    const err = await advance({ dealId: d.id, target: { case: "targetStage", value: "move-in" } }).catch((e) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect(err.message).toContain('from "enquiry" to "move-in"');
    expect((await dealRow(d.id)).version).toBe(1);
    expect(await history(d.id)).toHaveLength(1);
    const unknown = await advance({ dealId: d.id, target: { case: "targetStage", value: "signed" } }).catch((e) => e);
    expect(unknown).toBeInstanceOf(InvalidInputError);
    expect(unknown.field).toBe("target_stage");
  });

  it("leaves the deal where it is when a guard fails, reporting why", async () => {
    const d = await deal(await contact());
    await advance({ dealId: d.id, target: { case: "targetStage", value: "qualified" } });
    const res = await advance({ dealId: d.id, target: { case: "targetStage", value: "tour-booked" } });
    expect(res).toMatchObject({ advanced: false, previousStage: "qualified", newStage: "qualified", version: 2n });
    expect(res.guards).toHaveLength(1);
    expect(res.guards[0]).toMatchObject({ guardId: "move-in-date", passed: false });
    expect(res.guards[0]?.reason).toContain("EXPECTED_CLOSE: unset");
    expect(await history(d.id)).toHaveLength(2);
  });

  it("answers ABORTED for a stale expected_version, and lets exactly one of two racing moves win", async () => {
    const d = await deal(await contact());
    const stale = await advance({
      dealId: d.id,
      target: { case: "targetStage", value: "qualified" },
      expectedVersion: 7n,
    }).catch((e) => e);
    expect(stale).toBeInstanceOf(ConflictError);
    expect(stale.message).toContain("version 1");
    const race = await Promise.allSettled([
      advance({ dealId: d.id, target: { case: "targetStage", value: "qualified" }, expectedVersion: 1n }),
      advance({ dealId: d.id, target: { case: "targetStage", value: "lost" }, expectedVersion: 1n }),
    ]);
    expect(race.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const lost = race.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect(lost.reason).toBeInstanceOf(ConflictError);
    expect(await history(d.id)).toHaveLength(2);
    expect((await dealRow(d.id)).version).toBe(2);
  });

  it("evaluates a dry run without moving the deal or firing triggers", async () => {
    const d = await deal(await contact());
    const res = await advance({ dealId: d.id, target: { case: "targetStage", value: "qualified" }, dryRun: true });
    expect(res).toMatchObject({ advanced: true, newStage: "qualified", version: 1n });
    expect(res.triggers.every((t) => t.outcome === TriggerOutcome.SKIPPED)).toBe(true);
    expect((await dealRow(d.id)).stage).toBe("enquiry");
    expect(await history(d.id)).toHaveLength(1);
  });

  it("auto-advances a stored custom pipeline on time in stage and interactions since stage entry", async () => {
    const def: PipelineDefinition = create(PipelineDefinitionSchema, {
      id: "home-care",
      stages: [
        { id: "new", probability: 0.1 },
        { id: "engaged", probability: 0.4 },
        { id: "signed", probability: 1, outcome: StageOutcome.WON },
      ],
      transitions: [
        {
          fromStage: "new",
          toStage: "engaged",
          guards: [
            { id: "waited", check: { case: "minTimeInStage", value: durationFromMs(24 * hour) } },
            {
              id: "replied",
              check: {
                case: "interactionSinceStageEntry",
                value: { interactionType: InteractionType.EMAIL_REPLY, minCount: 1 },
              },
            },
          ],
        },
        {
          fromStage: "engaged",
          toStage: "signed",
          guards: [
            {
              id: "big-enough",
              check: {
                case: "dealField",
                value: {
                  field: { ref: { case: "dealField", value: DealField.AMOUNT } },
                  comparison: ComparisonOperator.GREATER_THAN_OR_EQUAL,
                  values: [{ kind: { case: "numberValue", value: 3000 } }],
                },
              },
            },
          ],
        },
      ],
    });
    const saved = await savePipeline(
      deps,
      create(SavePipelineRequestSchema, { requestId: randomUUID(), pipeline: def }),
    );
    expect(saved.version).toBe(1n);
    const same = await savePipeline(
      deps,
      create(SavePipelineRequestSchema, { requestId: randomUUID(), pipeline: def }),
    );
    expect(same.version).toBe(1n);

    const c = await contact();
    const d = await deal(c, { pipelineId: "home-care", amount: { currencyCode: "USD", units: 3200n } });
    expect(d.stage).toBe("new");
    const auto = () => advance({ dealId: d.id, target: { case: "autoAdvance", value: true } });

    clock += 2 * hour;
    let res = await auto();
    expect(res.advanced).toBe(false);
    expect(res.guards.map((g) => [g.guardId, g.passed])).toEqual([["waited", false]]);

    clock += 24 * hour;
    res = await auto();
    expect(res.guards.map((g) => [g.guardId, g.passed])).toEqual([
      ["waited", true],
      ["replied", false],
    ]);
    // A reply from before the deal entered its stage does not count; one after it does.
    const em = db.fork();
    for (const [i, at] of [start - hour, clock - hour].entries()) {
      em.create(CrmInteraction, {
        id: randomUUID(),
        eventId: `reply-${d.id}-${i}`,
        contact: c,
        type: InteractionType.EMAIL_REPLY,
        occurredAt: new Date(at),
        properties: [],
        recordedAt: now(),
      });
      await em.flush();
      res = await auto();
      expect(res.advanced).toBe(i === 1);
    }
    expect(res.newStage).toBe("engaged");
    res = await auto();
    expect(res).toMatchObject({ advanced: true, newStage: "signed" });
    const stored = await dealRow(d.id);
    expect(stored.outcome).toBe(StageOutcome.WON);
    expect(stored.closedAt?.getTime()).toBe(clock);
    // Closed and no transition out: auto mode has nothing to take.
    expect((await auto()).advanced).toBe(false);
  });

  it("rejects bad input naming the field, and an inline pipeline of another id", async () => {
    const d = await deal(await contact());
    const noId = await advancePipelineStage(
      deps,
      create(AdvanceSchema, { dealId: d.id, target: { case: "autoAdvance", value: true } }),
    ).catch((e) => e);
    expect(noId).toBeInstanceOf(InvalidInputError);
    expect(noId.field).toBe("request_id");
    const badDeal = await advance({ dealId: "nope", target: { case: "autoAdvance", value: true } }).catch((e) => e);
    expect(badDeal.field).toBe("deal_id");
    const other = await advance({
      dealId: d.id,
      target: { case: "autoAdvance", value: true },
      pipeline: { id: "other", stages: [{ id: "a" }, { id: "b" }], transitions: [{ fromStage: "a", toStage: "b" }] },
    }).catch((e) => e);
    expect(other).toBeInstanceOf(InvalidInputError);
    expect(other.field).toBe("pipeline.id");
    const noContact = await createDeal(
      deps,
      create(CreateDealRequestSchema, { requestId: randomUUID(), contactId: randomUUID() }),
    ).catch((e) => e);
    expect(noContact.field).toBe("contact_id");
    expect(await history(d.id)).toHaveLength(1);
  });

  it("keeps the history append-only and pages it newest first", async () => {
    const d = await deal(await contact());
    for (const stage of ["qualified", "lost", "enquiry", "qualified"]) {
      clock += hour;
      await advance({ dealId: d.id, target: { case: "targetStage", value: stage } });
    }
    const update = db
      .fork()
      .getConnection()
      .execute(`update "operations"."crm_deal_stage_change" set to_stage = 'x' where deal_id = '${d.id}'`);
    await expect(update).rejects.toThrow(/append-only/);
    const seen: string[] = [];
    let token = "";
    for (let page = 0; page < 5; page++) {
      const res = await listDealStageChanges(
        deps,
        create(ListDealStageChangesRequestSchema, { dealId: d.id, pageSize: 2, pageToken: token }),
      );
      seen.push(...res.changes.map((c) => `${c.fromStage}>${c.toStage}`));
      token = res.nextPageToken;
      if (token === "") break;
    }
    expect(seen).toEqual(["enquiry>qualified", "lost>enquiry", "qualified>lost", "enquiry>qualified", ">enquiry"]);
    const bad = await listDealStageChanges(
      deps,
      create(ListDealStageChangesRequestSchema, { dealId: d.id, pageToken: "garbage" }),
    ).catch((e) => e);
    expect(bad.field).toBe("page_token");
  });

  it("stamps task triggers with their due time", async () => {
    const d = await deal(await contact(), { expectedClose: timestampFromDate(new Date(start + 30 * 24 * hour)) });
    await advance({ dealId: d.id, target: { case: "targetStage", value: "qualified" } });
    const res = await advance({ dealId: d.id, target: { case: "targetStage", value: "tour-booked" } });
    expect(res.advanced).toBe(true);
    const task = (await eventsOf(d.id))
      .filter((e) => e.subject.endsWith("pipeline_trigger_fired"))
      .map((e) => fromBinary(PipelineTriggerFiredSchema, e.data))
      .find((e) => e.triggerId === "prepare-tour");
    expect(task?.dueAt?.seconds).toBe(BigInt((clock + 24 * hour) / 1000));
  });
});
