/**
 * Tables of stored (dynamic) segments in the `operations` schema: the definitions, and the
 * materialised membership that full evaluations diff in SQL and per-contact re-evaluations keep
 * current.
 */
import { defineEntity, type InferEntity, p } from "@mikro-orm/postgresql";
import type { StoredJson } from "../entities.ts";

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
  },
});

/** A current member of a stored segment. */
export const CrmSegmentMember = defineEntity({
  name: "CrmSegmentMember",
  tableName: "crm_segment_member",
  properties: {
    segmentKey: p.string().length(64).primary(),
    contactId: p.uuid().primary().index(),
    joinedAt: p.datetime(),
  },
});

/** Row types. */
export type CrmSegmentRow = InferEntity<typeof CrmSegment>;

/** The entities of stored segments, for the agent's `data`. */
export const segmentEntities = [CrmSegment, CrmSegmentMember] as const;
