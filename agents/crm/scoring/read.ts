/**
 * Reading stored lead scores: one contact's (GetLeadScore) and pages of them, highest first
 * (ListLeadScores), by keyset on (score descending, contact id), so pages stay stable while scores
 * are written.
 */
import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type GetLeadScoreRequest,
  GetLeadScoreRequestSchema,
  type GetLeadScoreResponse,
  GetLeadScoreResponseSchema,
  type LeadGrade,
  LeadScoreSchema,
  type ListLeadScoresRequest,
  ListLeadScoresRequestSchema,
  type ListLeadScoresResponse,
  ListLeadScoresResponseSchema,
  RuleContributionSchema,
  type StoredLeadScore,
  StoredLeadScoreSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { Database } from "../../../lib/db/index.ts";
import { checkContract, InvalidInputError, NotFoundError } from "../../../lib/errors/index.ts";

/** Dependencies of the reads. */
export interface LeadScoreReadDeps {
  db: Database;
}

interface ScoreRow {
  contact_id: string;
  score: number;
  fit_score: number;
  behaviour_score: number;
  grade: number;
  market: string;
  model_version: number;
  contributions: JsonValue[];
  scored_at: Date;
}

const columns = "contact_id, score, fit_score, behaviour_score, grade, market, model_version, contributions, scored_at";

function storedOf(r: ScoreRow): StoredLeadScore {
  return create(StoredLeadScoreSchema, {
    score: create(LeadScoreSchema, {
      contactId: r.contact_id,
      totalScore: Number(r.score),
      fitScore: Number(r.fit_score),
      behaviourScore: Number(r.behaviour_score),
      grade: r.grade as LeadGrade,
      contributions: r.contributions.map((c) => fromJson(RuleContributionSchema, c)),
      market: r.market,
    }),
    modelVersion: BigInt(r.model_version),
    scoredAt: timestampFromDate(new Date(r.scored_at)),
  });
}

/** GetLeadScore: the stored score of a contact; NOT_FOUND when it has none. */
export async function getLeadScore(deps: LeadScoreReadDeps, req: GetLeadScoreRequest): Promise<GetLeadScoreResponse> {
  checkContract(GetLeadScoreRequestSchema, req);
  const rows = (await deps.db
    .fork()
    .execute(`select ${columns} from "${deps.db.schema}"."crm_lead_score" where contact_id = ?`, [
      req.contactId.toLowerCase(),
    ])) as ScoreRow[];
  const r = rows[0];
  if (r === undefined) throw new NotFoundError(`contact ${req.contactId} has no stored lead score`);
  return create(GetLeadScoreResponseSchema, { leadScore: storedOf(r) });
}

const scope = "lead_scores";
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function encodeToken(score: number, id: string): string {
  return Buffer.from(JSON.stringify({ s: scope, v: score, i: id })).toString("base64url");
}

function decodeToken(token: string): { score: number; id: string } | undefined {
  if (token === "") return undefined;
  const bad = () => new InvalidInputError("page_token", "is not a page token of this list");
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw bad();
  }
  if (parsed === null || typeof parsed !== "object") throw bad();
  const t = parsed as { s?: unknown; v?: unknown; i?: unknown };
  if (t.s !== scope || typeof t.v !== "number" || !Number.isFinite(t.v)) throw bad();
  if (typeof t.i !== "string" || !uuid.test(t.i)) throw bad();
  return { score: t.v, id: t.i };
}

/** ListLeadScores: stored scores, highest first, filtered and paged. */
export async function listLeadScores(
  deps: LeadScoreReadDeps,
  req: ListLeadScoresRequest,
): Promise<ListLeadScoresResponse> {
  checkContract(ListLeadScoresRequestSchema, req);
  const size = req.pageSize === 0 ? 50 : req.pageSize;
  const after = decodeToken(req.pageToken);
  const where: string[] = [];
  const params: (string | number)[] = [];
  if (req.minScore !== undefined) {
    where.push("score >= ?");
    params.push(req.minScore);
  }
  if (req.grades.length > 0) {
    where.push(`grade in (${req.grades.map(() => "?").join(", ")})`);
    params.push(...req.grades);
  }
  if (req.market !== "") {
    where.push("market = ?");
    params.push(req.market.trim().toLowerCase());
  }
  if (after !== undefined) {
    where.push("(score < ? or (score = ? and contact_id > ?::uuid))");
    params.push(after.score, after.score, after.id);
  }
  const rows = (await deps.db
    .fork()
    .execute(
      `select ${columns} from "${deps.db.schema}"."crm_lead_score"${where.length > 0 ? ` where ${where.join(" and ")}` : ""}` +
        " order by score desc, contact_id limit ?",
      [...params, size + 1],
    )) as ScoreRow[];
  const page = rows.slice(0, size);
  const last = page.at(-1);
  return create(ListLeadScoresResponseSchema, {
    leadScores: page.map(storedOf),
    nextPageToken: rows.length > size && last !== undefined ? encodeToken(Number(last.score), last.contact_id) : "",
  });
}
