/**
 * Tables of stored (dynamic) segments in the `operations` schema: the definitions, and the
 * materialised membership that full evaluations diff in SQL and per-contact re-evaluations keep
 * current.
 */
import { defineEntity, type InferEntity, p } from "@mikro-orm/postgresql";
import { CrmContact, type StoredJson } from "../entities.ts";

/** A stored segment definition (mesh.crm.v1.SegmentDefinition as protobuf JSON), replaced as a whole. */
export const CrmSegment = defineEntity({
  name: "CrmSegment",
  tableName: "crm_segment",
  properties: {
    key: p.string().length(64).primary(),
    name: p.string().length(200).default(""),
    /** mesh.crm.v1.SegmentDefinition as protobuf JSON. */
    definition: p.json<StoredJson>(),
    /** 1 when first stored, incremented by every replacement. */
    version: p.integer(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    /** When the whole population was last evaluated. */
    evaluatedAt: p.datetime().nullable(),
    /**
     * When the scheduler (schedule.ts) evaluates it next because time alone may change its
     * membership (windows, relative dates); null when time alone cannot.
     */
    nextEvaluationAt: p.datetime().nullable().index(),
  },
});

/** A current member of a stored segment. */
export const CrmSegmentMember = defineEntity({
  name: "CrmSegmentMember",
  tableName: "crm_segment_member",
  properties: {
    segmentKey: () =>
      p
        .manyToOne(CrmSegment)
        .mapToPk()
        .fieldName("segment_key")
        .deleteRule("cascade")
        .updateRule("no action")
        .primary(),
    contactId: () =>
      p
        .manyToOne(CrmContact)
        .mapToPk()
        .fieldName("contact_id")
        .deleteRule("cascade")
        .updateRule("no action")
        .primary()
        .index(),
    joinedAt: p.datetime(),
  },
});

/**
 * One join or leave of a stored segment, append-only: written with the SegmentMembershipChanged
 * event in the same transaction (stored.ts `announce`), read by the contact timeline.
 */
export const CrmSegmentMembershipChange = defineEntity({
  name: "CrmSegmentMembershipChange",
  tableName: "crm_segment_membership_change",
  properties: {
    id: p.uuid().primary(),
    segmentKey: p.string().length(64),
    contactId: p.uuid(),
    /** `joined` or `left`. */
    action: p.string().length(8),
    segmentVersion: p.integer(),
    /** `full` or the subject of the event that caused the evaluation. */
    cause: p.string().length(200).default(""),
    changedAt: p.datetime(),
  },
  indexes: [
    {
      name: "crm_segment_membership_change_contact_index",
      expression: `create index "crm_segment_membership_change_contact_index" on "operations"."crm_segment_membership_change" ("contact_id", "changed_at" desc, "id" desc)`,
    },
  ],
});

/** Row types. */
export type CrmSegmentRow = InferEntity<typeof CrmSegment>;

/** The entities of stored segments, for the agent's `data`. */
export const segmentEntities = [CrmSegment, CrmSegmentMember, CrmSegmentMembershipChange] as const;
