/** Domain events the CRM agent publishes (through the transactional outbox). */
import {
  ConsentChangedSchema,
  ContactErasedSchema,
  ContactsMergedSchema,
  ContactsUnmergedSchema,
  InteractionTrackedSchema,
  LeadScoreChangedSchema,
  SegmentMembershipChangedSchema,
} from "../../gen/mesh/crm/v1/crm_events_pb.ts";
import { defineEvent } from "../../lib/bus/index.ts";

/** A new interaction was appended to the log: `<prefix>.events.crm.interaction_tracked`. */
export const InteractionTracked = defineEvent("crm", "interaction_tracked", InteractionTrackedSchema);

/** A contact's stored lead score changed on re-scoring: `<prefix>.events.crm.lead_score_changed`. */
export const LeadScoreChanged = defineEvent("crm", "lead_score_changed", LeadScoreChangedSchema);

/** Consent or the do-not-contact list changed: `<prefix>.events.crm.consent_changed`. */
export const ConsentChanged = defineEvent("crm", "consent_changed", ConsentChangedSchema);

/** A contact's personal data was erased: `<prefix>.events.crm.contact_erased`. */
export const ContactErased = defineEvent("crm", "contact_erased", ContactErasedSchema);

/** A contact joined or left a stored segment: `<prefix>.events.crm.segment_membership_changed`. */
export const SegmentMembershipChanged = defineEvent(
  "crm",
  "segment_membership_changed",
  SegmentMembershipChangedSchema,
);

/** Duplicate contacts were merged into a survivor: `<prefix>.events.crm.contacts_merged`. */
export const ContactsMerged = defineEvent("crm", "contacts_merged", ContactsMergedSchema);

/** A merge of duplicate contacts was undone: `<prefix>.events.crm.contacts_unmerged`. */
export const ContactsUnmerged = defineEvent("crm", "contacts_unmerged", ContactsUnmergedSchema);
