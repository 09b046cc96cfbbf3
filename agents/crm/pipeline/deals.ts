/**
 * Deals and pipelines: opening a deal, reading it and its append-only stage history, storing a
 * pipeline definition. Every stage change (a deal's creation included) appends one history row and
 * enqueues `crm.pipeline_stage_changed` in the same transaction; history rows are never updated
 * (the migration installs a trigger that refuses UPDATE on the table).
 */
import { randomUUID } from "node:crypto";
import { create, equals, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  AttributeSchema,
  type CreateDealRequest,
  CreateDealRequestSchema,
  type CreateDealResponse,
  CreateDealResponseSchema,
  type GetDealRequest,
  GetDealRequestSchema,
  type GetDealResponse,
  GetDealResponseSchema,
  type GuardEvaluation,
  GuardEvaluationSchema,
  type ListDealStageChangesRequest,
  ListDealStageChangesRequestSchema,
  type ListDealStageChangesResponse,
  ListDealStageChangesResponseSchema,
  PipelineDefinitionSchema,
  PipelineStageChangedSchema,
  type SavePipelineRequest,
  SavePipelineRequestSchema,
  type SavePipelineResponse,
  SavePipelineResponseSchema,
  StageOutcome,
  type TriggerResult,
  TriggerResultSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { type Bus, enqueueEvent } from "../../../lib/bus/index.ts";
import { type Database, type EntityManager, LockMode, transaction } from "../../../lib/db/index.ts";
import { ConflictError, checkContract, InvalidInputError, NotFoundError } from "../../../lib/errors/index.ts";
import { decodePageToken, encodePageToken, pageSizeOf } from "../contacts/page-token.ts";
import {
  CrmContact,
  CrmDeal,
  type CrmDealRow,
  CrmDealStageChange,
  type CrmDealStageChangeRow,
  CrmPipeline,
  type StoredJson,
} from "../entities.ts";
import { checkPipeline, defaultPipelineId, loadPipeline, outcomeOfStage, pipelineJson, stageOf } from "./definition.ts";
import { PipelineStageChangedEvent } from "./events.ts";
import { dealFromRow, stageChangeFromRow } from "./records.ts";

/** Dependencies of the deal operations. */
export interface DealDeps {
  /** The operations database. */
  db: Database;
  /** Bus, for the event subject prefix. */
  bus: Pick<Bus, "prefix">;
  /** Clock. */
  now: () => Date;
}

/** Guards against a cycle in `merged_into`. */
const maxMergeHops = 32;

/** What one stage change records. */
export interface StageChangeInput {
  /** Id of the history row; a new UUID when not given. */
  id?: string;
  deal: CrmDealRow;
  fromStage: string;
  requestId: string;
  changedAt: Date;
  guards: readonly GuardEvaluation[];
  triggers: readonly TriggerResult[];
}

/**
 * Appends the history row of a change the deal row already reflects (its stage, outcome and the
 * version it will have once flushed) and enqueues `crm.pipeline_stage_changed`; both commit with
 * the caller's transaction.
 */
export function recordStageChange(deps: DealDeps, em: EntityManager, c: StageChangeInput): CrmDealStageChangeRow {
  const row = em.create(CrmDealStageChange, {
    id: c.id ?? randomUUID(),
    deal: c.deal.id,
    contact: c.deal.contact,
    pipelineId: c.deal.pipelineId,
    fromStage: c.fromStage,
    toStage: c.deal.stage,
    outcome: c.deal.outcome,
    changedAt: c.changedAt,
    dealVersion: c.deal.version,
    requestId: c.requestId,
    guards: c.guards.map((g) => toJson(GuardEvaluationSchema, g) as StoredJson),
    triggers: c.triggers.map((t) => toJson(TriggerResultSchema, t) as StoredJson),
  });
  enqueueEvent(
    deps.db,
    em,
    deps.bus.prefix,
    PipelineStageChangedEvent,
    create(PipelineStageChangedSchema, {
      changeId: row.id,
      dealId: c.deal.id,
      pipelineId: c.deal.pipelineId,
      contactId: c.deal.contact,
      fromStage: c.fromStage,
      toStage: c.deal.stage,
      outcome: c.deal.outcome as StageOutcome,
      changedAt: timestampFromDate(c.changedAt),
      dealVersion: BigInt(c.deal.version),
    }),
    { msgId: `crm.pipeline_stage_changed.${row.id}` },
  );
  return row;
}

/**
 * CreateDeal: opens a deal in the pipeline's first open stage (or the named one) for a stored
 * contact; a contact merged away is replaced by its survivor. A replay of the request id returns
 * the deal it created.
 */
export async function createDeal(deps: DealDeps, req: CreateDealRequest): Promise<CreateDealResponse> {
  checkContract(CreateDealRequestSchema, req);
  if (req.amount !== undefined && (req.amount.units < 0n || req.amount.nanos < 0)) {
    throw new InvalidInputError("amount", "must not be negative");
  }
  const pipelineId = req.pipelineId || defaultPipelineId;
  return transaction(deps.db, async (em) => {
    const replayed = await em.findOne(CrmDealStageChange, { requestId: req.requestId.toLowerCase() });
    if (replayed !== null) {
      if (replayed.fromStage !== "") throw new ConflictError("request_id was already used for another request");
      const deal = await em.findOneOrFail(CrmDeal, { id: replayed.deal }, { refresh: true });
      return create(CreateDealResponseSchema, { deal: dealFromRow(deal) });
    }
    const pipeline = await loadPipeline(em, pipelineId);
    if (pipeline === undefined) throw new InvalidInputError("pipeline_id", `no pipeline "${pipelineId}" is stored`);
    const def = pipeline.definition;
    const stage =
      req.stage === "" ? def.stages.find((s) => outcomeOfStage(s) === StageOutcome.OPEN) : stageOf(def, req.stage);
    if (stage === undefined) {
      throw new InvalidInputError("stage", `"${req.stage}" is not a stage of pipeline "${pipelineId}"`);
    }
    let contact = await em.findOne(CrmContact, { id: req.contactId.toLowerCase() });
    if (contact === null) throw new InvalidInputError("contact_id", "no contact has this id");
    for (let hops = 0; contact.mergedInto != null; hops++) {
      if (hops >= maxMergeHops) throw new Error(`merged_into chain from contact ${req.contactId} is too long`);
      contact = await em.findOneOrFail(CrmContact, { id: contact.mergedInto });
    }
    const now = deps.now();
    const outcome = outcomeOfStage(stage);
    const deal = em.create(CrmDeal, {
      id: randomUUID(),
      pipelineId,
      name: req.name.trim(),
      contact: contact.id,
      stage: stage.id,
      outcome,
      currencyCode: req.amount?.currencyCode ?? null,
      amountUnits: req.amount !== undefined ? req.amount.units : null,
      amountNanos: req.amount?.nanos ?? null,
      expectedClose: req.expectedClose !== undefined ? timestampDate(req.expectedClose) : null,
      ownerEmail: req.ownerEmail.trim().toLowerCase(),
      source: req.source,
      attributes: req.attributes.map((a) => toJson(AttributeSchema, a) as StoredJson),
      createdAt: now,
      updatedAt: now,
      stageEnteredAt: now,
      closedAt: outcome === StageOutcome.OPEN ? null : now,
      version: 1,
    });
    recordStageChange(deps, em, {
      deal,
      fromStage: "",
      requestId: req.requestId.toLowerCase(),
      changedAt: now,
      guards: [],
      triggers: [],
    });
    await em.flush();
    return create(CreateDealResponseSchema, { deal: dealFromRow(deal) });
  });
}

/** GetDeal: the stored deal. */
export async function getDeal(deps: Pick<DealDeps, "db">, req: GetDealRequest): Promise<GetDealResponse> {
  checkContract(GetDealRequestSchema, req);
  const row = await deps.db.fork().findOne(CrmDeal, { id: req.dealId.toLowerCase() });
  if (row === null) throw new NotFoundError(`no deal has id ${req.dealId}`);
  return create(GetDealResponseSchema, { deal: dealFromRow(row) });
}

/** ListDealStageChanges: one keyset page of a deal's history, newest first. */
export async function listDealStageChanges(
  deps: Pick<DealDeps, "db">,
  req: ListDealStageChangesRequest,
): Promise<ListDealStageChangesResponse> {
  checkContract(ListDealStageChangesRequestSchema, req);
  const size = pageSizeOf(req.pageSize);
  const dealId = req.dealId.toLowerCase();
  const scope = `deal:${dealId}`;
  const before = decodePageToken(scope, req.pageToken);
  const em = deps.db.fork();
  if ((await em.count(CrmDeal, { id: dealId })) === 0) throw new NotFoundError(`no deal has id ${req.dealId}`);
  const keys = (await em.execute(
    `select id, changed_at::text as at from "${deps.db.schema}"."crm_deal_stage_change" where deal_id = ?` +
      `${before === undefined ? "" : " and (changed_at, id) < (?::timestamptz, ?::uuid)"} order by changed_at desc, id desc limit ?`,
    [dealId, ...(before === undefined ? [] : [before.at, before.id]), size + 1],
  )) as { id: string; at: string }[];
  const page = keys.slice(0, size);
  const rows = page.length === 0 ? [] : await em.find(CrmDealStageChange, { id: { $in: page.map((k) => k.id) } });
  const byId = new Map(rows.map((r) => [r.id, r]));
  const last = page.at(-1);
  return create(ListDealStageChangesResponseSchema, {
    changes: page.flatMap((k) => {
      const r = byId.get(k.id);
      return r === undefined ? [] : [stageChangeFromRow(r)];
    }),
    nextPageToken: keys.length > size && last !== undefined ? encodePageToken(scope, last) : "",
  });
}

/**
 * SavePipeline: stores a definition by id. Saving the definition already stored changes nothing
 * (its version stays); another definition replaces it and increments the version. Deals in a
 * stage the new definition lacks keep their stage and fail to advance with FAILED_PRECONDITION
 * until moved by a definition that has it.
 */
export async function savePipeline(
  deps: Pick<DealDeps, "db" | "now">,
  req: SavePipelineRequest,
): Promise<SavePipelineResponse> {
  checkContract(SavePipelineRequestSchema, req);
  const def = req.pipeline;
  if (def === undefined) throw new InvalidInputError("pipeline", "is required");
  checkPipeline(def, "pipeline");
  const json = pipelineJson(def);
  return transaction(deps.db, async (em) => {
    // Serialises saves of one id, also the first (no row to lock yet).
    await em.execute("select pg_advisory_xact_lock(hashtextextended(?, 0))", [`crm.pipeline:${def.id}`]);
    const row = await em.findOne(CrmPipeline, { id: def.id }, { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true });
    const now = deps.now();
    let version: number;
    if (row === null) {
      em.create(CrmPipeline, { id: def.id, definition: json, version: 1, createdAt: now, updatedAt: now });
      version = 1;
    } else if (equals(PipelineDefinitionSchema, fromJson(PipelineDefinitionSchema, row.definition as JsonValue), def)) {
      version = row.version;
    } else {
      row.definition = json;
      row.version += 1;
      row.updatedAt = now;
      version = row.version;
    }
    await em.flush();
    return create(SavePipelineResponseSchema, { pipeline: def, version: BigInt(version) });
  });
}
