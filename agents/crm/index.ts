/** The CRM agent: contacts, interactions, scoring, pipeline, appointments, forecasting. */

import type { EntitySchema } from "@mikro-orm/postgresql";
import { CrmService } from "../../gen/mesh/crm/v1/crm_service_pb.ts";
import { defineAgent } from "../../lib/server/index.ts";
import { getContact, getContactTimeline, listContacts } from "./contacts/read.ts";
import { createEnrichment, databaseCache, enrichmentEntities } from "./enrichment/index.ts";
import { crmEntities } from "./entities.ts";
import { migrations } from "./migrations/index.ts";
import { createDeal, getDeal, listDealStageChanges, savePipeline } from "./pipeline/deals.ts";
import { advancePipelineStage } from "./skills/advance-pipeline-stage.ts";
import { detectDuplicates } from "./skills/detect-duplicates.ts";
import { enrichContact } from "./skills/enrich-contact.ts";
import { forecastSales } from "./skills/forecast-sales.ts";
import { modelCustomerLifecycle } from "./skills/model-customer-lifecycle.ts";
import { trackInteraction } from "./skills/track-interaction.ts";

/** Crm agent module; skills not listed in `implemented` answer UNIMPLEMENTED until their issue lands. */
export const crmAgent = defineAgent({
  id: "crm",
  service: CrmService,
  implemented: [
    "TrackInteraction",
    "DetectDuplicates",
    "ModelCustomerLifecycle",
    "AdvancePipelineStage",
    "ForecastSales",
    "GetContact",
    "ListContacts",
    "GetContactTimeline",
    "CreateDeal",
    "GetDeal",
    "ListDealStageChanges",
    "SavePipeline",
    "EnrichContact",
  ],
  data: { entities: [...crmEntities, ...enrichmentEntities] as readonly EntitySchema[], migrations },
  // Enrichment asks HTTP providers with no transaction open and writes in a short one of its own.
  selfTransacted: ["EnrichContact"],
  create: (deps) => {
    const http = deps.config.enrichmentHttp;
    const enrichment = createEnrichment({
      cache: databaseCache(deps.db),
      ...(http === undefined
        ? {}
        : {
            http: [
              {
                name: http.name,
                baseUrl: http.baseUrl,
                apiKeyHeader: http.apiKeyHeader,
                timeoutMs: http.timeoutMs,
                ...(http.apiKey === undefined ? {} : { apiKey: http.apiKey }),
              },
            ],
          }),
    });
    return {
      trackInteraction: (req) => trackInteraction(deps, req),
      detectDuplicates: (req, ctx) => detectDuplicates({}, req, ctx),
      modelCustomerLifecycle: (req, ctx) => modelCustomerLifecycle(deps, req, ctx),
      advancePipelineStage: (req) => advancePipelineStage(deps, req),
      forecastSales: (req) => forecastSales(deps, req),
      getContact: (req) => getContact(deps, req),
      listContacts: (req) => listContacts(deps, req),
      getContactTimeline: (req) => getContactTimeline(deps, req),
      createDeal: (req) => createDeal(deps, req),
      getDeal: (req) => getDeal(deps, req),
      listDealStageChanges: (req) => listDealStageChanges(deps, req),
      savePipeline: (req) => savePipeline(deps, req),
      enrichContact: (req, ctx) => enrichContact({ db: deps.db, now: deps.now, enrichment }, req, ctx),
    };
  },
});
