/**
 * Pipeline definitions: the built-in senior-living pipeline, the checks a definition must pass
 * beyond its protovalidate rules, and loading the definition of a pipeline id (stored, else
 * built-in).
 */

import { create, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import {
  BooleanOperator,
  ComparisonOperator,
  ContactField,
  DealField,
  LifecycleStage,
  type PipelineDefinition,
  PipelineDefinitionSchema,
  type PipelineStage,
  StageOutcome,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { EntityManager } from "../../../lib/db/index.ts";
import { checkContract, InvalidInputError } from "../../../lib/errors/index.ts";
import { refuseSegmentOnlyNodes } from "../conditions.ts";
import { CrmPipeline, type StoredJson } from "../entities.ts";

/** Id of the built-in pipeline, used for deals that name none. */
export const defaultPipelineId = "senior-living";

const day = 24 * 3600 * 1000;

/**
 * The built-in senior-living pipeline: enquiry → qualified → tour booked → move-in, with lost
 * reachable from every open stage and a lost deal reopenable as a new enquiry. Guards: a
 * qualified lead can be reached by phone or email; a tour is booked only for a deal with an
 * expected move-in date; a move-in needs the monthly fee (amount). Triggers keep the contact's
 * lifecycle stage in step and hand work to people and to the Email agent.
 */
export const seniorLivingPipeline: PipelineDefinition = create(PipelineDefinitionSchema, {
  id: defaultPipelineId,
  stages: [
    { id: "enquiry", name: "Enquiry", probability: 0.1, outcome: StageOutcome.OPEN },
    { id: "qualified", name: "Qualified", probability: 0.3, outcome: StageOutcome.OPEN },
    { id: "tour-booked", name: "Tour booked", probability: 0.6, outcome: StageOutcome.OPEN },
    { id: "move-in", name: "Move-in", probability: 1, outcome: StageOutcome.WON },
    { id: "lost", name: "Lost", probability: 0, outcome: StageOutcome.LOST },
  ],
  transitions: [
    {
      fromStage: "enquiry",
      toStage: "qualified",
      guards: [
        {
          id: "reachable",
          description: "The contact has an email address or a phone number.",
          check: {
            case: "contactCondition",
            value: {
              node: {
                case: "group",
                value: {
                  booleanOperator: BooleanOperator.OR,
                  conditions: [
                    {
                      node: {
                        case: "field",
                        value: {
                          field: { ref: { case: "contactField", value: ContactField.EMAIL } },
                          comparison: ComparisonOperator.IS_SET,
                        },
                      },
                    },
                    {
                      node: {
                        case: "field",
                        value: {
                          field: { ref: { case: "contactField", value: ContactField.PHONE } },
                          comparison: ComparisonOperator.IS_SET,
                        },
                      },
                    },
                  ],
                },
              },
            },
          },
        },
      ],
      triggers: [
        { id: "mark-sql", action: { case: "setLifecycleStage", value: LifecycleStage.SALES_QUALIFIED_LEAD } },
        { id: "nurture", action: { case: "startSequenceId", value: "qualified-nurture" } },
      ],
    },
    {
      fromStage: "qualified",
      toStage: "tour-booked",
      guards: [
        {
          id: "move-in-date",
          description: "The deal has an expected move-in (close) date.",
          check: {
            case: "dealField",
            value: {
              field: { ref: { case: "dealField", value: DealField.EXPECTED_CLOSE } },
              comparison: ComparisonOperator.IS_SET,
            },
          },
        },
      ],
      triggers: [
        { id: "mark-opportunity", action: { case: "setLifecycleStage", value: LifecycleStage.OPPORTUNITY } },
        {
          id: "prepare-tour",
          action: { case: "createTask", value: { title: "Prepare the community tour", dueIn: durationFromMs(day) } },
        },
      ],
    },
    {
      fromStage: "tour-booked",
      toStage: "move-in",
      guards: [
        {
          id: "monthly-fee",
          description: "The deal has its monthly fee (amount) above zero.",
          check: {
            case: "dealField",
            value: {
              field: { ref: { case: "dealField", value: DealField.AMOUNT } },
              comparison: ComparisonOperator.GREATER_THAN,
              values: [{ kind: { case: "numberValue", value: 0 } }],
            },
          },
        },
      ],
      triggers: [
        { id: "mark-customer", action: { case: "setLifecycleStage", value: LifecycleStage.CUSTOMER } },
        {
          id: "welcome-call",
          action: {
            case: "createTask",
            value: { title: "Welcome call after move-in", dueIn: durationFromMs(7 * day) },
          },
        },
      ],
    },
    { fromStage: "tour-booked", toStage: "qualified", guards: [], triggers: [] },
    { fromStage: "*", toStage: "lost", guards: [], triggers: [] },
    { fromStage: "lost", toStage: "enquiry", guards: [], triggers: [] },
  ],
});

/**
 * Checks what protovalidate cannot express: at least one open stage, one transition per (from, to)
 * pair, no transition into the stage it leaves, guard and trigger ids unique within their
 * transition. `field` prefixes the reported field path.
 */
export function checkPipeline(def: PipelineDefinition, field: string): void {
  checkContract(PipelineDefinitionSchema, def);
  if (!def.stages.some((s) => outcomeOfStage(s) === StageOutcome.OPEN)) {
    throw new InvalidInputError(`${field}.stages`, "needs at least one open stage");
  }
  const pairs = new Set<string>();
  def.transitions.forEach((t, i) => {
    const at = `${field}.transitions[${i}]`;
    if (t.fromStage === t.toStage) throw new InvalidInputError(`${at}.to_stage`, "must differ from from_stage");
    const pair = `${t.fromStage}→${t.toStage}`;
    if (pairs.has(pair)) throw new InvalidInputError(at, `repeats the transition ${pair}`);
    pairs.add(pair);
    const guards = new Set<string>();
    t.guards.forEach((g, j) => {
      if (guards.has(g.id)) throw new InvalidInputError(`${at}.guards[${j}].id`, `repeats guard id ${g.id}`);
      guards.add(g.id);
      if (g.check.case === "contactCondition") {
        refuseSegmentOnlyNodes(g.check.value, `${at}.guards[${j}].contact_condition`, "pipeline guards");
      }
    });
    const triggers = new Set<string>();
    t.triggers.forEach((g, j) => {
      if (triggers.has(g.id)) throw new InvalidInputError(`${at}.triggers[${j}].id`, `repeats trigger id ${g.id}`);
      triggers.add(g.id);
    });
  });
}

/** A stage's outcome, with UNSPECIFIED read as OPEN. */
export function outcomeOfStage(stage: PipelineStage): StageOutcome {
  return stage.outcome === StageOutcome.UNSPECIFIED ? StageOutcome.OPEN : stage.outcome;
}

/** The stage with `id`, or undefined. */
export function stageOf(def: PipelineDefinition, id: string): PipelineStage | undefined {
  return def.stages.find((s) => s.id === id);
}

/** A loaded definition and its stored version (0 for the built-in one). */
export interface LoadedPipeline {
  definition: PipelineDefinition;
  version: number;
}

/** The stored definition of `id`, else the built-in one with that id, else undefined. */
export async function loadPipeline(em: EntityManager, id: string): Promise<LoadedPipeline | undefined> {
  const row = await em.findOne(CrmPipeline, { id });
  if (row !== null) {
    return { definition: fromJson(PipelineDefinitionSchema, row.definition as JsonValue), version: row.version };
  }
  return id === defaultPipelineId ? { definition: seniorLivingPipeline, version: 0 } : undefined;
}

/** A definition as stored (protobuf JSON). */
export function pipelineJson(def: PipelineDefinition): StoredJson {
  return toJson(PipelineDefinitionSchema, def) as StoredJson;
}
