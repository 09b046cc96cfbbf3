/**
 * Tables of lead scoring in the `operations` schema: the stored scoring model (one, id `default`),
 * its learned market weights, the conversions the CRM learned of (`data.conversion_recorded`), and
 * the current score of each contact (`crm_lead_score`, which segments may filter on in SQL).
 */
import { defineEntity, type InferEntity, p } from "@mikro-orm/postgresql";
import { CrmContact, type StoredJson } from "../entities.ts";

/** The stored scoring model used by event-driven re-scoring, replaced as a whole. */
export const CrmScoringModel = defineEntity({
  name: "CrmScoringModel",
  tableName: "crm_scoring_model",
  properties: {
    /** Always `default`: one stored model per deployment. */
    id: p.string().length(64).primary(),
    /** mesh.crm.v1.ScoringModel as protobuf JSON. */
    model: p.json<StoredJson>(),
    /** mesh.crm.v1.MarketWeighting as protobuf JSON; null when the model has no market weighting. */
    marketWeighting: p.json<StoredJson>().nullable(),
    /** 1 when first stored, incremented by every replacement. */
    version: p.integer(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

/**
 * The learned weight of one behaviour rule of the stored model in one market (`market` = "" is the
 * national row). Replaced when the model is saved and, for a conversion's market and the nation,
 * when a conversion arrives.
 */
export const CrmScoringMarketWeight = defineEntity({
  name: "CrmScoringMarketWeight",
  tableName: "crm_scoring_market_weight",
  properties: {
    market: p.string().length(301).primary(),
    ruleId: p.string().length(64).primary(),
    engaged: p.integer(),
    converted: p.integer(),
    rate: p.double(),
    multiplier: p.double(),
    updatedAt: p.datetime(),
  },
});

/** A conversion of a CRM contact, from `data.conversion_recorded`; one row per conversion id. */
export const CrmScoringConversion = defineEntity({
  name: "CrmScoringConversion",
  tableName: "crm_scoring_conversion",
  properties: {
    conversionId: p.string().length(64).primary(),
    contactId: () =>
      p.manyToOne(CrmContact).mapToPk().fieldName("contact_id").deleteRule("cascade").updateRule("no action").index(),
    conversionName: p.string().length(128).default(""),
    occurredAt: p.datetime(),
    recordedAt: p.datetime(),
  },
});

/**
 * The current lead score of a contact under the stored model, as last recomputed from its events.
 * `grade` is the mesh.crm.v1.LeadGrade number; `market` the lower-cased `city|region` key ("" when
 * the contact has no city).
 */
export const CrmLeadScore = defineEntity({
  name: "CrmLeadScore",
  tableName: "crm_lead_score",
  properties: {
    contactId: () =>
      p.manyToOne(CrmContact).mapToPk().fieldName("contact_id").deleteRule("cascade").updateRule("no action").primary(),
    score: p.double(),
    fitScore: p.double(),
    behaviourScore: p.double(),
    grade: p.integer(),
    market: p.string().length(301).default("").index(),
    modelVersion: p.integer(),
    /** mesh.crm.v1.RuleContribution list as protobuf JSON. */
    contributions: p.json<StoredJson[]>(),
    /** Time the decay was computed at. */
    scoredAt: p.datetime(),
    updatedAt: p.datetime(),
  },
  // ListLeadScores pages by (score descending, contact id).
  indexes: [
    {
      name: "crm_lead_score_ranking_index",
      expression: `create index "crm_lead_score_ranking_index" on "operations"."crm_lead_score" ("score" desc, "contact_id")`,
    },
  ],
});

/** A stored lead score row. */
export type CrmLeadScoreRow = InferEntity<typeof CrmLeadScore>;

/** The lead scoring entities, for the operations domain. */
export const scoringEntities = [CrmScoringModel, CrmScoringMarketWeight, CrmScoringConversion, CrmLeadScore] as const;
