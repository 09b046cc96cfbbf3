/**
 * The stored scoring model (one per deployment, id `default`) and its learned market weights:
 * saving it (SaveScoringModel), reading it (cached by version), and refreshing the weights when a
 * conversion arrives. Saving and refreshing hold one transaction-scoped advisory lock, so the
 * weight rows always belong to the model version stored beside them.
 */
import { create, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import {
  MarketRuleWeightSchema,
  type MarketWeighting,
  MarketWeightingSchema,
  type SaveScoringModelRequest,
  SaveScoringModelRequestSchema,
  type SaveScoringModelResponse,
  SaveScoringModelResponseSchema,
  type ScoringModel,
  ScoringModelSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { type Database, type EntityManager, transaction } from "../../../lib/db/index.ts";
import { checkContract } from "../../../lib/errors/index.ts";
import type { StoredJson } from "../entities.ts";
import { type LearnedWeights, learnMarketWeights, type MarketSettings, marketSettings } from "./market.ts";
import { checkScoringModel } from "./validate.ts";

/** Id of the one stored model. */
export const storedModelId = "default";
const lockKey = "crm.scoring_model";

/** The stored model, parsed. */
export interface StoredModel {
  model: ScoringModel;
  settings: MarketSettings | undefined;
  version: number;
}

async function lock(em: EntityManager): Promise<void> {
  await em.execute("select pg_advisory_xact_lock(hashtextextended(?, 0))", [lockKey]);
}

/** Replaces the stored weight rows of `markets` (all markets when undefined) and the national rows. */
async function writeWeights(
  em: EntityManager,
  schema: string,
  learned: LearnedWeights,
  now: Date,
  onlyMarket: string | undefined,
): Promise<void> {
  const t = `"${schema}"."crm_scoring_market_weight"`;
  if (onlyMarket === undefined) await em.execute(`delete from ${t}`);
  else await em.execute(`delete from ${t} where market in ('', ?)`, [onlyMarket]);
  const rows = [...learned.national, ...[...learned.markets.values()].flatMap((m) => [...m.values()])];
  for (let i = 0; i < rows.length; i += 1000) {
    const part = rows.slice(i, i + 1000);
    await em.execute(
      `insert into ${t} (market, rule_id, engaged, converted, rate, multiplier, updated_at) values ${part
        .map(() => "(?, ?, ?, ?, ?, ?, ?)")
        .join(", ")}`,
      part.flatMap((r) => [r.market, r.ruleId, r.engaged, r.converted, r.rate, r.multiplier, now]),
    );
  }
}

/** Dependencies of saving the model. */
export interface SaveScoringModelDeps {
  db: Database;
  now: () => Date;
}

/** SaveScoringModel: stores the model, learns its market weights and answers the new version. */
export async function saveScoringModel(
  deps: SaveScoringModelDeps,
  req: SaveScoringModelRequest,
): Promise<SaveScoringModelResponse> {
  checkContract(SaveScoringModelRequestSchema, req);
  const model = checkScoringModel(req.model);
  const settings = marketSettings(req.marketWeighting);
  return transaction(deps.db, async (em) => {
    await lock(em);
    const now = deps.now();
    const t = `"${deps.db.schema}"."crm_scoring_model"`;
    const weighting: StoredJson | null =
      req.marketWeighting === undefined ? null : (toJson(MarketWeightingSchema, req.marketWeighting) as StoredJson);
    const rows = (await em.execute(
      `insert into ${t} (id, model, market_weighting, version, created_at, updated_at) values (?, ?::jsonb, ?::jsonb, 1, ?, ?)` +
        ` on conflict (id) do update set model = excluded.model, market_weighting = excluded.market_weighting,` +
        ` version = ${t}.version + 1, updated_at = excluded.updated_at returning version`,
      [
        storedModelId,
        JSON.stringify(toJson(ScoringModelSchema, model)),
        weighting === null ? null : JSON.stringify(weighting),
        now,
        now,
      ],
    )) as { version: number }[];
    const version = rows[0]?.version ?? 1;
    const learned: LearnedWeights =
      settings === undefined
        ? { national: [], markets: new Map() }
        : await learnMarketWeights(em, deps.db.schema, model, settings, now);
    await writeWeights(em, deps.db.schema, learned, now, undefined);
    return create(SaveScoringModelResponseSchema, {
      version: BigInt(version),
      marketCount: learned.markets.size,
      national: learned.national.map((w) => create(MarketRuleWeightSchema, w)),
    });
  });
}

/** Parsed models by database, so each event does not parse the model again. */
const cache = new WeakMap<Database, StoredModel>();

/** The model parsed last for `db`, whatever version is stored now; undefined before the first load. */
export function cachedStoredModel(db: Database): StoredModel | undefined {
  return cache.get(db);
}

/** The stored model (parsed once per version); undefined when none is stored. */
export async function loadStoredModel(db: Database, em: EntityManager): Promise<StoredModel | undefined> {
  const schema = db.schema;
  const head = (await em.execute(`select version from "${schema}"."crm_scoring_model" where id = ?`, [
    storedModelId,
  ])) as { version: number }[];
  const h = head[0];
  if (h === undefined) return undefined;
  const cached = cache.get(db);
  if (cached !== undefined && cached.version === h.version) return cached;
  const rows = (await em.execute(
    `select model, market_weighting, version from "${schema}"."crm_scoring_model" where id = ?`,
    [storedModelId],
  )) as { model: JsonValue; market_weighting: JsonValue | null; version: number }[];
  const r = rows[0];
  if (r === undefined) return undefined;
  const weighting: MarketWeighting | undefined =
    r.market_weighting === null ? undefined : fromJson(MarketWeightingSchema, r.market_weighting);
  const parsed: StoredModel = {
    model: fromJson(ScoringModelSchema, r.model),
    settings: marketSettings(weighting),
    version: r.version,
  };
  cache.set(db, parsed);
  return parsed;
}

/** Re-learns the national rates and one market's weights of the stored model (after a conversion). */
export async function refreshMarket(db: Database, em: EntityManager, market: string, now: Date): Promise<void> {
  const schema = db.schema;
  await lock(em);
  const stored = await loadStoredModel(db, em);
  if (stored?.settings === undefined) return;
  const learned = await learnMarketWeights(em, schema, stored.model, stored.settings, now, market);
  await writeWeights(em, schema, learned, now, market);
}
