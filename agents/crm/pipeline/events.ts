/**
 * Events of the deal pipeline, published through the transactional outbox in the transaction that
 * records the stage change (so a change is announced exactly when it commits).
 */
import { PipelineStageChangedSchema, PipelineTriggerFiredSchema } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { defineEvent } from "../../../lib/bus/index.ts";

/** A deal entered a stage (its creation included): `<prefix>.events.crm.pipeline_stage_changed`. */
export const PipelineStageChangedEvent = defineEvent("crm", "pipeline_stage_changed", PipelineStageChangedSchema);

/** One trigger of a taken transition, for whoever acts on it: `<prefix>.events.crm.pipeline_trigger_fired`. */
export const PipelineTriggerFiredEvent = defineEvent("crm", "pipeline_trigger_fired", PipelineTriggerFiredSchema);
