/** The CRM agent: contacts, interactions, scoring, pipeline, appointments, forecasting. */

import type { EntitySchema } from "@mikro-orm/postgresql";
import { CrmService } from "../../gen/mesh/crm/v1/crm_service_pb.ts";
import { defineAgent } from "../../lib/server/index.ts";
import { cancelAppointment, getFreeBusy, importCalendar, rescheduleAppointment } from "./appointments/api.ts";
import { appointmentEntities } from "./appointments/entities.ts";
import { addDoNotContact, getConsent, listDoNotContact, recordConsent, removeDoNotContact } from "./consent/consent.ts";
import { consentEntities } from "./consent/entities.ts";
import { startConsentFollower } from "./consent/follower.ts";
import { getContact, getContactTimeline, listContacts } from "./contacts/read.ts";
import { startEmailCopyConsumer } from "./emails/consumer.ts";
import { emailCopyEntities } from "./emails/entities.ts";
import { createEnrichment, databaseCache, enrichmentEntities } from "./enrichment/index.ts";
import { crmEntities } from "./entities.ts";
import { mergeEntities } from "./merges/entities.ts";
import { contactMerger, storedContactsSource, unmergeContacts } from "./merges/store.ts";
import { migrations } from "./migrations/index.ts";
import { createDeal, getDeal, listDealStageChanges, savePipeline } from "./pipeline/deals.ts";
import { privacyEntities } from "./privacy/entities.ts";
import { eraseContact, exportContactData } from "./privacy/privacy.ts";
import {
  getLeadScore,
  listLeadScores,
  saveScoringModel,
  scoringEntities,
  startLeadScoring,
  storedLeadScore,
} from "./scoring/index.ts";
import { startSegmentConsumers } from "./segments/consumer.ts";
import { segmentEntities } from "./segments/entities.ts";
import { createSegmentScheduler, recheckLimitsOf } from "./segments/schedule.ts";
import { evaluateSegment, getSegment, listSegmentMembers, listSegments, saveSegment } from "./segments/stored.ts";
import { advancePipelineStage } from "./skills/advance-pipeline-stage.ts";
import { detectDuplicates } from "./skills/detect-duplicates.ts";
import { enrichContact } from "./skills/enrich-contact.ts";
import { forecastSales } from "./skills/forecast-sales.ts";
import { modelCustomerLifecycle } from "./skills/model-customer-lifecycle.ts";
import { scheduleAppointment } from "./skills/schedule-appointment.ts";
import { scoreLeads } from "./skills/score-leads.ts";
import { segmentContacts } from "./skills/segment-contacts.ts";
import { trackInteraction } from "./skills/track-interaction.ts";

/** Crm agent module; skills not listed in `implemented` answer UNIMPLEMENTED until their issue lands. */
export const crmAgent = defineAgent({
  id: "crm",
  service: CrmService,
  implemented: [
    "SegmentContacts",
    "SaveSegment",
    "EvaluateSegment",
    "GetSegment",
    "ListSegments",
    "ListSegmentMembers",
    "ScoreLeads",
    "SaveScoringModel",
    "GetLeadScore",
    "ListLeadScores",
    "TrackInteraction",
    "DetectDuplicates",
    "UnmergeContacts",
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
    "RecordConsent",
    "GetConsent",
    "AddDoNotContact",
    "RemoveDoNotContact",
    "ListDoNotContact",
    "ExportContactData",
    "EraseContact",
    "ScheduleAppointment",
    "ImportCalendar",
    "GetFreeBusy",
    "RescheduleAppointment",
    "CancelAppointment",
  ],
  data: {
    entities: [
      ...crmEntities,
      ...mergeEntities,
      ...enrichmentEntities,
      ...scoringEntities,
      ...consentEntities,
      ...privacyEntities,
      ...segmentEntities,
      ...appointmentEntities,
      ...emailCopyEntities,
    ] as readonly EntitySchema[],
    migrations,
  },
  // Enrichment asks HTTP providers with no transaction open and writes in a short one of its own.
  // Erasure calls the Email agent and deletes stream messages around its own transaction.
  // Appointment changes store in short transactions of their own, then email the invitations.
  selfTransacted: [
    // Duplicate detection reads outside any transaction and merges each cluster in one of its own.
    "DetectDuplicates",
    "EnrichContact",
    "EraseContact",
    "ScheduleAppointment",
    "RescheduleAppointment",
    "CancelAppointment",
  ],
  // Stored lead scores follow interactions and conversions (durable consumers, see scoring/consumer.ts).
  // Stored segments follow interactions and lead scores too (segments/consumer.ts), and time: the
  // scheduler re-evaluates windowed segments when they fall due (segments/schedule.ts).
  background: async (deps) => [
    ...(await startLeadScoring(deps)),
    ...(await startSegmentConsumers({ ...deps, recheck: recheckLimitsOf(deps.config) })),
    createSegmentScheduler({
      ...deps,
      recheck: recheckLimitsOf(deps.config),
      batch: deps.config.segmentRecheckBatch,
    }).start(),
    // Addresses learned after a do-not-contact change are announced blocked too (consent/follower.ts).
    await startConsentFollower(deps),
    // The copy of the emails sent to contacts, for the timeline and exports (emails/consumer.ts).
    await startEmailCopyConsumer(deps),
  ],
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
    const leadScore = storedLeadScore(deps.db);
    return {
      segmentContacts: (req) => segmentContacts(deps, req),
      saveSegment: (req) => saveSegment({ ...deps, recheck: recheckLimitsOf(deps.config) }, req),
      evaluateSegment: (req) => evaluateSegment({ ...deps, recheck: recheckLimitsOf(deps.config) }, req),
      getSegment: (req) => getSegment(deps, req),
      listSegments: (req) => listSegments(deps, req),
      listSegmentMembers: (req) => listSegmentMembers(deps, req),
      scoreLeads: (req) => scoreLeads(deps, req),
      saveScoringModel: (req) => saveScoringModel(deps, req),
      getLeadScore: (req) => getLeadScore(deps, req),
      listLeadScores: (req) => listLeadScores(deps, req),
      trackInteraction: (req) => trackInteraction(deps, req),
      detectDuplicates: (req, ctx) =>
        detectDuplicates({ storedContacts: storedContactsSource(deps.db), merger: contactMerger(deps) }, req, ctx),
      unmergeContacts: (req, ctx) => unmergeContacts(deps, req, ctx),
      modelCustomerLifecycle: (req, ctx) => modelCustomerLifecycle(deps, req, ctx),
      // The min_lead_score guard reads the stored lead score (scoring/).
      advancePipelineStage: (req) => advancePipelineStage({ ...deps, leadScore }, req),
      forecastSales: (req) => forecastSales(deps, req),
      getContact: (req) => getContact(deps, req),
      listContacts: (req) => listContacts(deps, req),
      getContactTimeline: (req) => getContactTimeline(deps, req),
      createDeal: (req) => createDeal(deps, req),
      getDeal: (req) => getDeal(deps, req),
      listDealStageChanges: (req) => listDealStageChanges(deps, req),
      savePipeline: (req) => savePipeline(deps, req),
      enrichContact: (req, ctx) => enrichContact({ db: deps.db, now: deps.now, enrichment }, req, ctx),
      recordConsent: (req) => recordConsent(deps, req),
      getConsent: (req) => getConsent(deps, req),
      addDoNotContact: (req) => addDoNotContact(deps, req),
      removeDoNotContact: (req) => removeDoNotContact(deps, req),
      listDoNotContact: (req) => listDoNotContact(deps, req),
      exportContactData: (req, ctx) => exportContactData(deps, req, ctx),
      eraseContact: (req, ctx) => eraseContact(deps, req, ctx),
      scheduleAppointment: (req) => scheduleAppointment(deps, req),
      importCalendar: (req) => importCalendar(deps, req),
      getFreeBusy: (req) => getFreeBusy(deps, req),
      rescheduleAppointment: (req) => rescheduleAppointment(deps, req),
      cancelAppointment: (req) => cancelAppointment(deps, req),
    };
  },
});
