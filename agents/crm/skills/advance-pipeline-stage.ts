/**
 * Pipeline stage advancement with trigger conditions (`crm.pipeline_advancement`).
 *
 * Method: the pipeline is a finite-state machine driven by a transition table (pipeline/machine.ts):
 * stages are states, each transition lists guards (conditions on the deal, its primary contact,
 * the time in stage, the contact's interactions since it entered the stage, the lead score) and
 * triggers. A request names a target stage, or asks for auto mode, where the transitions out of the
 * current stage are tried in listed order and the first whose guards all pass is taken.
 *
 * A target with no transition from the current stage is FAILED_PRECONDITION naming both stages;
 * guards that do not pass leave the deal where it is and answer `advanced = false` with every
 * evaluation and its reason. A move updates the deal under its row lock and optimistic version
 * (`expected_version`, ABORTED when stale), appends one history row (never updated), applies
 * `set_lifecycle_stage` to the contact, and enqueues `crm.pipeline_stage_changed` plus one
 * `crm.pipeline_trigger_fired` per trigger through the outbox, all in one transaction: the
 * side effects the triggers stand for (sequence enrolment, tasks, notices) are carried out by the
 * consumers of that event, at most once per change (the outbox message id is fixed per change and
 * trigger). A request id already recorded answers the recorded change without doing anything.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { durationMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { DeadlockException, LockWaitTimeoutException } from "@mikro-orm/postgresql";
import {
  type AdvancePipelineStageRequest,
  AdvancePipelineStageRequestSchema,
  type AdvancePipelineStageResponse,
  AdvancePipelineStageResponseSchema,
  type BehaviourCondition,
  LifecycleStageSchema,
  PipelineTriggerFiredSchema,
  StageOutcome,
  type StageTransition,
  TriggerOutcome,
  type TriggerResult,
  TriggerResultSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { enqueueEvent } from "../../../lib/bus/index.ts";
import { type EntityManager, LockMode, OptimisticLockError, transaction } from "../../../lib/db/index.ts";
import {
  ConflictError,
  checkContract,
  FailedPreconditionError,
  InvalidInputError,
  NotFoundError,
} from "../../../lib/errors/index.ts";
import {
  CrmContact,
  type CrmContactRow,
  CrmDeal,
  type CrmDealRow,
  CrmDealStageChange,
  CrmInteraction,
} from "../entities.ts";
import { enumName } from "../pipeline/compare.ts";
import { type DealDeps, recordStageChange } from "../pipeline/deals.ts";
import { checkPipeline, loadPipeline, outcomeOfStage, stageOf } from "../pipeline/definition.ts";
import { PipelineTriggerFiredEvent } from "../pipeline/events.ts";
import { evaluateGuard, type GuardContext } from "../pipeline/guards.ts";
import { decideMove, type MoveTarget } from "../pipeline/machine.ts";
import { stageChangeFromRow } from "../pipeline/records.ts";

/** Dependencies of the skill. */
export interface AdvancePipelineStageDeps extends DealDeps {
  /**
   * The contact's lead score under the stored default scoring model, for `min_lead_score` guards;
   * absent (or answering undefined) until lead scoring stores one, and such guards do not pass.
   */
  leadScore?: (contactId: string) => Promise<number | undefined>;
}

/** Runs stage advancement on a request. */
export async function advancePipelineStage(
  deps: AdvancePipelineStageDeps,
  req: AdvancePipelineStageRequest,
): Promise<AdvancePipelineStageResponse> {
  checkContract(AdvancePipelineStageRequestSchema, req);
  if (req.pipeline !== undefined) checkPipeline(req.pipeline, "pipeline");
  const target: MoveTarget =
    req.target.case === "targetStage"
      ? { kind: "stage", stage: req.target.value }
      : req.target.case === "autoAdvance"
        ? { kind: "auto" }
        : (() => {
            throw new InvalidInputError("target", "name a target_stage or set auto_advance");
          })();
  try {
    return await transaction(deps.db, (em) => advance(deps, em, req, target));
  } catch (err) {
    if (
      err instanceof DeadlockException ||
      err instanceof LockWaitTimeoutException ||
      err instanceof OptimisticLockError
    ) {
      throw new ConflictError("a concurrent call changed the deal or its contact; read it again and retry", {
        cause: err,
      });
    }
    throw err;
  }
}

/** Counts the contact's interactions matching `cond` in [since, now]. */
async function countInteractions(
  em: EntityManager,
  contactId: string,
  cond: BehaviourCondition,
  since: Date | undefined,
  now: Date,
): Promise<number> {
  const like = cond.urlContains.replace(/[\\%_]/g, (c) => `\\${c}`);
  return em.count(CrmInteraction, {
    contact: contactId,
    type: cond.interactionType,
    ...(cond.channel !== 0 ? { channel: cond.channel } : {}),
    ...(cond.urlContains !== "" ? { url: { $ilike: `%${like}%` } } : {}),
    occurredAt: since === undefined ? { $lte: now } : { $gte: since, $lte: now },
  });
}

/** The answer for a request id already recorded. */
async function replayed(
  em: EntityManager,
  req: AdvancePipelineStageRequest,
): Promise<AdvancePipelineStageResponse | undefined> {
  const row = await em.findOne(CrmDealStageChange, { requestId: req.requestId.toLowerCase() });
  if (row === null) return undefined;
  if (row.deal !== req.dealId.toLowerCase() || row.fromStage === "") {
    throw new ConflictError("request_id was already used for another request; use a new request_id");
  }
  const change = stageChangeFromRow(row);
  return create(AdvancePipelineStageResponseSchema, {
    dealId: change.dealId,
    previousStage: change.fromStage,
    newStage: change.toStage,
    advanced: true,
    version: change.dealVersion,
    guards: change.guards,
    triggers: change.triggers,
    changedAt: change.changedAt,
  });
}

async function advance(
  deps: AdvancePipelineStageDeps,
  em: EntityManager,
  req: AdvancePipelineStageRequest,
  target: MoveTarget,
): Promise<AdvancePipelineStageResponse> {
  const again = await replayed(em, req);
  if (again !== undefined) return again;

  const deal = await em.findOne(
    CrmDeal,
    { id: req.dealId.toLowerCase() },
    { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true },
  );
  if (deal === null) throw new NotFoundError(`no deal has id ${req.dealId}`);
  if (req.expectedVersion !== 0n && BigInt(deal.version) !== req.expectedVersion) {
    throw new ConflictError(
      `deal ${deal.id} is at version ${deal.version}, not the expected ${req.expectedVersion}; read it again`,
    );
  }
  let def = req.pipeline;
  if (def !== undefined && def.id !== deal.pipelineId) {
    throw new InvalidInputError("pipeline.id", `the deal belongs to pipeline "${deal.pipelineId}", not "${def.id}"`);
  }
  if (def === undefined) {
    def = (await loadPipeline(em, deal.pipelineId))?.definition;
    if (def === undefined) throw new FailedPreconditionError(`the deal's pipeline "${deal.pipelineId}" is not stored`);
  }
  const contact = await em.findOneOrFail(CrmContact, { id: deal.contact }, { refresh: true });
  const now = deps.now();
  const ctx: GuardContext = {
    deal,
    contact,
    now,
    countInteractions: (cond, since) => countInteractions(em, contact.id, cond, since, now),
    leadScore: async (id) => (deps.leadScore === undefined ? undefined : deps.leadScore(id)),
  };
  const decision = await decideMove(def, deal.stage, target, (g) => evaluateGuard(ctx, g));
  const base = { dealId: deal.id, previousStage: deal.stage, guards: decision.guards };
  const taken = decision.taken;
  if (taken === undefined) {
    return create(AdvancePipelineStageResponseSchema, {
      ...base,
      newStage: deal.stage,
      advanced: false,
      version: BigInt(deal.version),
    });
  }
  if (req.dryRun) {
    return create(AdvancePipelineStageResponseSchema, {
      ...base,
      newStage: taken.toStage,
      advanced: true,
      version: BigInt(deal.version),
      triggers: taken.triggers.map((t) =>
        create(TriggerResultSchema, { triggerId: t.id, outcome: TriggerOutcome.SKIPPED, detail: "dry run" }),
      ),
    });
  }

  // Apply: the deal, the contact's lifecycle stage, the history row and the events, one transaction.
  const stage = stageOf(def, taken.toStage);
  if (stage === undefined) throw new Error(`transition into unknown stage ${taken.toStage}`);
  const fromStage = deal.stage;
  const outcome = outcomeOfStage(stage);
  deal.stage = stage.id;
  deal.outcome = outcome;
  deal.stageEnteredAt = now;
  deal.closedAt = outcome === StageOutcome.OPEN ? null : now;
  deal.updatedAt = now;
  const changeId = randomUUID();
  const triggers = fireTriggers(deps, em, { taken, deal, contact, fromStage, changeId, now });
  await em.flush();
  recordStageChange(deps, em, {
    id: changeId,
    deal,
    fromStage,
    requestId: req.requestId.toLowerCase(),
    changedAt: now,
    guards: decision.guards,
    triggers,
  });
  await em.flush();
  return create(AdvancePipelineStageResponseSchema, {
    ...base,
    newStage: deal.stage,
    advanced: true,
    version: BigInt(deal.version),
    triggers,
    changedAt: timestampFromDate(now),
  });
}

/** Applies the in-database triggers and enqueues one event per trigger; returns their results. */
function fireTriggers(
  deps: AdvancePipelineStageDeps,
  em: EntityManager,
  c: {
    taken: StageTransition;
    deal: CrmDealRow;
    contact: CrmContactRow;
    fromStage: string;
    changeId: string;
    now: Date;
  },
): TriggerResult[] {
  const results: TriggerResult[] = [];
  for (const t of c.taken.triggers) {
    let detail: string;
    let dueAt: Date | undefined;
    const action = t.action;
    switch (action.case) {
      case "setLifecycleStage":
        if (c.contact.lifecycleStage !== action.value) {
          c.contact.lifecycleStage = action.value;
          c.contact.updatedAt = c.now;
        }
        detail = `contact ${c.contact.id} lifecycle stage set to ${enumName(LifecycleStageSchema, action.value)}`;
        break;
      case "startSequenceId":
        detail = `sequence ${action.value} requested for contact ${c.contact.id}`;
        break;
      case "createTask":
        dueAt = new Date(c.now.getTime() + (action.value.dueIn ? durationMs(action.value.dueIn) : 0));
        detail = `task "${action.value.title}" due ${dueAt.toISOString()} for ${action.value.assigneeEmail || c.deal.ownerEmail || "the deal owner"}`;
        break;
      case "notifyEmail":
        detail = `notice to ${action.value} requested`;
        break;
      default:
        detail = "no action";
    }
    const msgId = `crm.pipeline_trigger_fired.${c.changeId}.${t.id}`;
    enqueueEvent(
      deps.db,
      em,
      deps.bus.prefix,
      PipelineTriggerFiredEvent,
      create(PipelineTriggerFiredSchema, {
        changeId: c.changeId,
        triggerId: t.id,
        dealId: c.deal.id,
        contactId: c.contact.id,
        fromStage: c.fromStage,
        toStage: c.deal.stage,
        ownerEmail: c.deal.ownerEmail,
        trigger: t,
        ...(dueAt !== undefined ? { dueAt: timestampFromDate(dueAt) } : {}),
        changedAt: timestampFromDate(c.now),
      }),
      { msgId },
    );
    results.push(
      create(TriggerResultSchema, {
        triggerId: t.id,
        outcome: TriggerOutcome.FIRED,
        detail: `${detail}; event ${msgId}`,
      }),
    );
  }
  return results;
}
