/**
 * Stored cadences: the definition of a sequence under its `sequence_id` (a new definition replaces
 * the old one with the next revision), the checks protovalidate cannot express, and the choice of
 * a cadence for a segment and market with fallbacks (city → region → the segment's default).
 */
import { equals, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import type { EntityManager } from "@mikro-orm/postgresql";
import {
  type FollowUpCadence,
  FollowUpCadenceSchema,
  FollowUpChannel,
  StopCondition,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { isValidZone, minutesOf, type SendingWindow } from "./plan.ts";

/** A stored cadence and its revision. */
export interface StoredCadence {
  readonly cadence: FollowUpCadence;
  readonly revision: number;
}

/** Checks what the contract cannot: the time zone exists, and every email step's template is given. */
export function checkCadence(c: FollowUpCadence, field = "cadence"): void {
  if (!isValidZone(c.timeZone)) {
    throw new InvalidInputError(`${field}.time_zone`, `"${c.timeZone}" is not an IANA time zone`);
  }
  const templates = new Set<string>();
  c.templates.forEach((t, i) => {
    if (templates.has(t.templateId)) {
      throw new InvalidInputError(`${field}.templates[${i}].template_id`, `template "${t.templateId}" is given twice`);
    }
    templates.add(t.templateId);
  });
  c.steps.forEach((s, i) => {
    if (s.channel === FollowUpChannel.EMAIL && !templates.has(s.templateId)) {
      throw new InvalidInputError(
        `${field}.steps[${i}].template_id`,
        `template "${s.templateId}" is not among the cadence's templates`,
      );
    }
  });
  if (c.marketCity !== "" && c.marketRegion === "") {
    throw new InvalidInputError(`${field}.market_city`, "a market city needs its market_region");
  }
  if (c.marketRegion !== "" && c.segmentKey === "") {
    throw new InvalidInputError(`${field}.segment_key`, "a market cadence needs the segment_key it belongs to");
  }
}

/** The cadence's sending window, or undefined for "any time". */
export function windowOf(c: FollowUpCadence): SendingWindow | undefined {
  const w = c.sendingWindow;
  if (w === undefined) return undefined;
  return { days: new Set(w.days.map(Number)), startMinute: minutesOf(w.startTime), endMinute: minutesOf(w.endTime) };
}

/** Stop conditions in force: the listed ones, plus unsubscribes and hard bounces always. */
export function stopConditionsOf(c: FollowUpCadence): number[] {
  return [...new Set([...c.stopConditions.map(Number), StopCondition.UNSUBSCRIBED, StopCondition.BOUNCED])].sort(
    (a, b) => a - b,
  );
}

/** The segment key the send-time model learns under: the cadence's segment, else its sequence. */
export function modelKeyOf(c: FollowUpCadence): string {
  return c.segmentKey !== "" ? `segment:${c.segmentKey}` : `sequence:${c.sequenceId}`;
}

/** Stores the definition (a changed one as the next revision) and returns what is stored, row locked. */
export async function storeCadence(
  em: EntityManager,
  schema: string,
  c: FollowUpCadence,
  now: Date,
): Promise<StoredCadence> {
  const conn = em.getConnection();
  const tx = em.getTransactionContext();
  const [cur] = await conn.execute<{ revision: number; definition: JsonValue }[]>(
    `select revision, definition from "${schema}"."email_follow_up_cadence" where sequence_id = ? for update`,
    [c.sequenceId],
    "all",
    tx,
  );
  if (cur !== undefined) {
    const stored = fromJson(FollowUpCadenceSchema, cur.definition);
    if (equals(FollowUpCadenceSchema, stored, c)) return { cadence: stored, revision: cur.revision };
  }
  const revision = (cur?.revision ?? 0) + 1;
  await conn.execute(
    `insert into "${schema}"."email_follow_up_cadence" (sequence_id, revision, name, definition, stop_conditions, segment_key, market_region, market_city, created_at, updated_at)
     values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     on conflict (sequence_id) do update set revision = excluded.revision, name = excluded.name, definition = excluded.definition,
       stop_conditions = excluded.stop_conditions, segment_key = excluded.segment_key, market_region = excluded.market_region,
       market_city = excluded.market_city, updated_at = excluded.updated_at`,
    [
      c.sequenceId,
      revision,
      c.name,
      JSON.stringify(toJson(FollowUpCadenceSchema, c)),
      JSON.stringify(stopConditionsOf(c)),
      c.segmentKey,
      c.marketRegion.toUpperCase(),
      c.marketCity.trim().toLowerCase(),
      now,
      now,
    ],
    "run",
    tx,
  );
  return { cadence: c, revision };
}

/** The stored cadence of a sequence, or undefined. */
export async function loadCadence(
  em: EntityManager,
  schema: string,
  sequenceId: string,
): Promise<StoredCadence | undefined> {
  const [row] = await em
    .getConnection()
    .execute<{ revision: number; definition: JsonValue }[]>(
      `select revision, definition from "${schema}"."email_follow_up_cadence" where sequence_id = ?`,
      [sequenceId],
      "all",
      em.getTransactionContext(),
    );
  return row === undefined
    ? undefined
    : { cadence: fromJson(FollowUpCadenceSchema, row.definition), revision: row.revision };
}

/**
 * The cadence for a contact of `segmentKey` in a market: the one for its city and region, else its
 * region's, else the segment's default (no market); undefined when the segment has none.
 */
export async function cadenceForMarket(
  em: EntityManager,
  schema: string,
  segmentKey: string,
  region: string,
  city: string,
): Promise<StoredCadence | undefined> {
  const [row] = await em.getConnection().execute<{ sequence_id: string }[]>(
    `select sequence_id from "${schema}"."email_follow_up_cadence"
     where segment_key = ? and ((market_region = ? and market_city in (?, '')) or market_region = '')
     order by (market_region <> '') desc, (market_city <> '') desc, sequence_id limit 1`,
    [segmentKey, region.trim().toUpperCase(), city.trim().toLowerCase()],
    "all",
    em.getTransactionContext(),
  );
  return row === undefined ? undefined : loadCadence(em, schema, row.sequence_id);
}
