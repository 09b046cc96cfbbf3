/** The audit of duplicate merges: what a merge changed, so it can be undone exactly. */
import { defineEntity, type InferEntity, p } from "@mikro-orm/postgresql";
import type { StoredJson } from "../entities.ts";

/**
 * One merge of a duplicate cluster into its surviving contact. Append-only (a database trigger
 * refuses any change but recording the unmerge, once): it keeps every member's row as it was
 * before the merge, the interactions and identity nodes the merge moved, who merged and how.
 */
export const CrmContactMerge = defineEntity({
  name: "CrmContactMerge",
  tableName: "crm_contact_merge",
  // Append-only: a merge's facts never change; only its unmerge is recorded, once.
  triggers: [
    {
      name: "crm_contact_merge_append_only",
      timing: "before",
      events: ["update"],
      forEach: "row",
      body: "if old.unmerged_at is not null or new.id <> old.id or new.request_id <> old.request_id or new.survivor_id <> old.survivor_id or new.merged_ids <> old.merged_ids or new.previous <> old.previous or new.moved_interaction_ids <> old.moved_interaction_ids or new.moved_identities <> old.moved_identities or new.method <> old.method or new.match_probability <> old.match_probability or new.merged_by <> old.merged_by or new.merged_at <> old.merged_at then raise exception 'crm_contact_merge is append-only: only an unmerge is recorded, once'; end if; return new;",
    },
  ],
  properties: {
    id: p.uuid().primary(),
    /** The DetectDuplicates request that merged; with the survivor, what makes a replay merge nothing. */
    requestId: p.uuid(),
    survivorId: p.uuid().index(),
    /** Contact ids merged into the survivor. */
    mergedIds: p.json<string[]>(),
    /** Every member's row before the merge ({@link ContactSnapshot}), survivor first. */
    previous: p.json<StoredJson[]>(),
    /** The interactions re-attributed ({@link MovedInteraction}). */
    movedInteractionIds: p.json<StoredJson[]>(),
    /** The identity sets the merge changed ({@link MovedIdentities}). */
    movedIdentities: p.json<StoredJson>(),
    /** How the cluster was found, e.g. `fellegi-sunter`. */
    method: p.string().length(32),
    /** Lowest posterior match probability among the cluster's matching pairs. */
    matchProbability: p.double(),
    mergedBy: p.string().length(128).default(""),
    mergedAt: p.datetime(),
    unmergeRequestId: p.uuid().nullable().unique(),
    unmergedBy: p.string().length(128).nullable(),
    unmergedAt: p.datetime().nullable(),
  },
  uniques: [{ properties: ["requestId", "survivorId"] }],
});

/** A stored merge. */
export type CrmContactMergeRow = InferEntity<typeof CrmContactMerge>;

/** Entities of merges. */
export const mergeEntities = [CrmContactMerge] as const;
