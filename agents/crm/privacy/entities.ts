/** The erasure audit of the CRM agent: one row per erasure, holding no personal data. */
import { defineEntity, type InferEntity, p } from "@mikro-orm/postgresql";

/**
 * What an erasure did: the contact id (a random UUID that identifies no one once the contact is
 * gone), who asked, when, and the counts per kind. Append-only.
 */
export const CrmErasureAudit = defineEntity({
  name: "CrmErasureAudit",
  tableName: "crm_erasure_audit",
  properties: {
    id: p.uuid().primary(),
    requestId: p.uuid().unique(),
    contactId: p.uuid().index(),
    /** The request's `requested_by` (an operator or ticket reference). */
    requestedBy: p.string().length(200).default(""),
    /** The authenticated caller, "" when the call had none (in-process tests). */
    caller: p.string().length(200).default(""),
    erasedAt: p.datetime(),
    /** mesh.crm.v1.ErasureCounts as protobuf JSON. */
    counts: p.json<Record<string, number>>(),
  },
});

/** A stored erasure audit record. */
export type CrmErasureAuditRow = InferEntity<typeof CrmErasureAudit>;

/** Every privacy entity. */
export const privacyEntities = [CrmErasureAudit] as const;
