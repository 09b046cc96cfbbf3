/** Stored deals, stage changes and pipelines as their protobuf messages. */
import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { MoneySchema } from "../../../gen/mesh/common/v1/types_pb.ts";
import {
  AttributeSchema,
  type Deal,
  DealSchema,
  type DealStageChange,
  DealStageChangeSchema,
  GuardEvaluationSchema,
  type StageOutcome,
  TriggerResultSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { CrmDealRow, CrmDealStageChangeRow } from "../entities.ts";

/** The deal message of a stored deal. */
export function dealFromRow(row: CrmDealRow): Deal {
  return create(DealSchema, {
    id: row.id,
    pipelineId: row.pipelineId,
    name: row.name,
    contactId: row.contact,
    stage: row.stage,
    outcome: row.outcome as StageOutcome,
    ...(row.currencyCode != null
      ? {
          amount: create(MoneySchema, {
            currencyCode: row.currencyCode,
            units: BigInt(row.amountUnits ?? 0),
            nanos: row.amountNanos ?? 0,
          }),
        }
      : {}),
    ...(row.expectedClose != null ? { expectedClose: timestampFromDate(row.expectedClose) } : {}),
    ownerEmail: row.ownerEmail,
    source: row.source,
    attributes: row.attributes.map((a) => fromJson(AttributeSchema, a as JsonValue)),
    createdAt: timestampFromDate(row.createdAt),
    stageEnteredAt: timestampFromDate(row.stageEnteredAt),
    ...(row.closedAt != null ? { closedAt: timestampFromDate(row.closedAt) } : {}),
    version: BigInt(row.version),
  });
}

/** The history message of a stored stage change. */
export function stageChangeFromRow(row: CrmDealStageChangeRow): DealStageChange {
  return create(DealStageChangeSchema, {
    id: row.id,
    dealId: row.deal,
    pipelineId: row.pipelineId,
    contactId: row.contact,
    fromStage: row.fromStage,
    toStage: row.toStage,
    changedAt: timestampFromDate(row.changedAt),
    dealVersion: BigInt(row.dealVersion),
    guards: row.guards.map((g) => fromJson(GuardEvaluationSchema, g as JsonValue)),
    triggers: row.triggers.map((t) => fromJson(TriggerResultSchema, t as JsonValue)),
    requestId: row.requestId,
  });
}
