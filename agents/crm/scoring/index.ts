/** Lead scoring of the CRM agent: the points model, market weights, the stored model and scores, re-scoring from events. */
export { ConversionRecorded, conversionsDurable, interactionsDurable, startLeadScoring } from "./consumer.ts";
export { scoringEntities } from "./entities.ts";
export { getLeadScore, listLeadScores } from "./read.ts";
export { saveScoringModel } from "./stored-model.ts";

import type { Database } from "../../../lib/db/index.ts";

/**
 * The stored lead score of a contact (for the pipeline's `min_lead_score` guard); undefined when
 * the contact has no stored score.
 */
export function storedLeadScore(db: Database): (contactId: string) => Promise<number | undefined> {
  return async (contactId) => {
    const rows = (await db
      .fork()
      .execute(`select score from "${db.schema}"."crm_lead_score" where contact_id = ?`, [
        contactId.toLowerCase(),
      ])) as {
      score: number;
    }[];
    return rows[0] === undefined ? undefined : Number(rows[0].score);
  };
}
