/**
 * crm.segmentation (SegmentContacts): segment membership at request time by one of three methods.
 *
 * - Rule trees: every segment's boolean tree (and/or/not over typed field comparisons, behaviour
 *   counts in windows, lead scores and conversions) is compiled into one parameterised SQL query
 *   over the population that returns every segment's count and one keyset page of members
 *   (segments/compile.ts, segments/rules.ts).
 * - RFM: recency, frequency and monetary quantile scores (quintiles by default) placed on the
 *   standard R × FM grid of eleven named segments (segments/rfm.ts); purchases are the inline
 *   transactions or the CRM's won deals.
 * - K-means: Lloyd's algorithm with k-means++ seeding (ml-kmeans) on z-score standardised features
 *   (numeric attributes, interaction counts in a window, RFM measures), best of several seeded
 *   restarts by inertia, with the mean silhouette (segments/kmeans.ts).
 *
 * Members are listed by contact id in pages; a page token carries the last id and the evaluation
 * time, and is bound to the request's definition, so later pages see the same windows.
 */
import { clone, create, toBinary } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  ClusterFeatureSchema,
  InteractionTypeSchema,
  type KMeansSegmentation,
  RfmMeasure,
  type RfmSegmentation,
  type RuleSegmentation,
  type SegmentContactsRequest,
  SegmentContactsRequestSchema,
  type SegmentContactsResponse,
  SegmentContactsResponseSchema,
  SegmentMemberSchema,
  SegmentSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { Database, EntityManager } from "../../../lib/db/index.ts";
import { checkContract, FailedPreconditionError, InvalidInputError } from "../../../lib/errors/index.ts";
import { clusterKMeans } from "../segments/kmeans.ts";
import { populationSql } from "../segments/population.ts";
import { loadMeasures } from "../segments/purchases.ts";
import { rfmSegments, scoreRfm } from "../segments/rfm.ts";
import { compileSegments, evaluateRules } from "../segments/rules.ts";
import { durationMs } from "../segments/sql.ts";
import { decodeMemberToken, encodeMemberToken, type MemberPosition, scopeOf } from "../segments/token.ts";

/** Dependencies of the skill. */
export interface SegmentContactsDeps {
  /** The operations database. */
  readonly db: Database;
  readonly now: () => Date;
}

/** Members per page when the request says 0. */
export const defaultMemberPageSize = 100;
/** Most contacts k-means clusters in one request (the population's bound in the contract). */
export const maxClusterPopulation = 100_000;
const dayMs = 86_400_000;

/** Paging state of one request. */
interface Paging {
  readonly scope: string;
  readonly size: number;
  readonly after: MemberPosition | undefined;
  readonly asOf: Date;
}

/** The scope, size, position and evaluation time of a request's member page. */
function pagingOf(req: SegmentContactsRequest, now: Date): Paging {
  const def = clone(SegmentContactsRequestSchema, req);
  def.pageToken = "";
  def.pageSize = 0;
  def.countsOnly = false;
  const scope = scopeOf("segment-contacts", toBinary(SegmentContactsRequestSchema, def));
  const after = decodeMemberToken(scope, req.pageToken);
  const asOf = req.asOf !== undefined ? timestampDate(req.asOf) : after !== undefined ? new Date(after.asOf) : now;
  return { scope, size: req.pageSize === 0 ? defaultMemberPageSize : req.pageSize, after, asOf };
}

/** The next page token after `lastId`, or "" on the last page. */
function nextToken(p: Paging, more: boolean, lastId: string | undefined): string {
  return more && lastId !== undefined
    ? encodeMemberToken(p.scope, { afterId: lastId, asOf: p.asOf.toISOString() })
    : "";
}

/** SegmentContacts: segments with counts, and one page of members. */
export async function segmentContacts(
  deps: SegmentContactsDeps,
  req: SegmentContactsRequest,
): Promise<SegmentContactsResponse> {
  checkContract(SegmentContactsRequestSchema, req);
  const paging = pagingOf(req, deps.now());
  const em = deps.db.fork();
  const schema = `"${deps.db.schema}"`;
  switch (req.method.case) {
    case "rules":
      return segmentByRules(em, schema, req, req.method.value, paging);
    case "rfm":
      return segmentByRfm(em, schema, req, req.method.value, paging);
    case "kmeans":
      return segmentByKMeans(em, schema, req, req.method.value, paging);
    default:
      throw new InvalidInputError("method", "give rules, rfm or kmeans");
  }
}

async function segmentByRules(
  em: EntityManager,
  schema: string,
  req: SegmentContactsRequest,
  rules: RuleSegmentation,
  p: Paging,
): Promise<SegmentContactsResponse> {
  const compiled = compileSegments(rules, schema, p.asOf);
  const res = await evaluateRules(em, populationSql(schema, req.contactIds, req.contacts, p.asOf), compiled, {
    firstMatchOnly: rules.firstMatchOnly,
    afterId: p.after?.afterId,
    pageSize: p.size,
    countsOnly: req.countsOnly,
  });
  return create(SegmentContactsResponseSchema, {
    segments: rules.segments.map((s, i) => {
      const count = res.counts[i] ?? 0;
      return create(SegmentSchema, {
        key: s.key,
        name: s.name,
        memberCount: BigInt(count),
        share: res.population > 0 ? count / res.population : 0,
      });
    }),
    members: res.page.map((m) =>
      create(SegmentMemberSchema, {
        contactId: m.id,
        segmentKeys: m.segments.map((i) => rules.segments[i]?.key ?? ""),
      }),
    ),
    nextPageToken: nextToken(p, res.more, res.page.at(-1)?.id),
    populationCount: BigInt(res.population),
    unassignedCount: BigInt(res.unassigned),
  });
}

/** Ids of the request's population when it names one (listed or inline contacts). */
function namedPopulation(req: SegmentContactsRequest): string[] | undefined {
  if (req.contactIds.length > 0) return req.contactIds.map((id) => id.toLowerCase());
  if (req.contacts.length > 0) return req.contacts.map((c) => c.id.toLowerCase());
  return undefined;
}

async function segmentByRfm(
  em: EntityManager,
  schema: string,
  req: SegmentContactsRequest,
  rfm: RfmSegmentation,
  p: Paging,
): Promise<SegmentContactsResponse> {
  const bins = rfm.bins === 0 ? 5 : rfm.bins;
  const named = namedPopulation(req);
  const measures = await loadMeasures(em, schema, rfm.transactions, {
    asOf: p.asOf,
    lookbackMs: durationMs(rfm.lookback),
    currency: rfm.currencyCode === "" ? "USD" : rfm.currencyCode,
    contactIds: named,
  });
  let population = measures.length;
  if (named !== undefined) population = new Set(named).size;
  else if (rfm.transactions.length === 0) {
    const rows = (await em.execute(
      `select count(*)::int as n from ${schema}."crm_contact" where merged_into_id is null`,
    )) as {
      n: number;
    }[];
    population = Number(rows[0]?.n ?? 0);
  }
  const scored = scoreRfm(measures, bins).sort((a, b) =>
    a.contactId < b.contactId ? -1 : a.contactId > b.contactId ? 1 : 0,
  );
  const counts = new Map<number, number>();
  for (const s of scored) counts.set(s.segment, (counts.get(s.segment) ?? 0) + 1);
  const keyOf = new Map(rfmSegments.map((s) => [s.segment, s.key]));
  const after = p.after?.afterId;
  const rest = after === undefined ? scored : scored.filter((s) => s.contactId > after);
  const page = req.countsOnly ? [] : rest.slice(0, p.size);
  return create(SegmentContactsResponseSchema, {
    segments: rfmSegments.map((s) =>
      create(SegmentSchema, {
        key: s.key,
        name: s.name,
        memberCount: BigInt(counts.get(s.segment) ?? 0),
        share: population > 0 ? (counts.get(s.segment) ?? 0) / population : 0,
        rfmSegment: s.segment,
      }),
    ),
    members: page.map((s) =>
      create(SegmentMemberSchema, {
        contactId: s.contactId,
        segmentKeys: [keyOf.get(s.segment) ?? ""],
        rfm: {
          recencyScore: s.r,
          frequencyScore: s.f,
          monetaryScore: s.m,
          recencyDays: s.recencyDays,
          frequency: s.frequency,
          monetaryMicros: s.monetaryMicros,
        },
      }),
    ),
    nextPageToken: req.countsOnly ? "" : nextToken(p, rest.length > p.size, page.at(-1)?.contactId),
    populationCount: BigInt(population),
    unassignedCount: BigInt(Math.max(0, population - scored.length)),
  });
}

/** The feature name of a clustering feature, for example `attr:budget` or `rfm:frequency`. */
function featureName(f: KMeansSegmentation["features"][number]): string {
  switch (f.source.case) {
    case "attributeKey":
      return `attr:${f.source.value}`;
    case "interactionCount": {
      const v = InteractionTypeSchema.values.find((e) => e.number === f.source.value);
      return `interactions:${(v?.localName ?? String(f.source.value)).toLowerCase()}`;
    }
    case "rfmMeasure":
      return f.source.value === RfmMeasure.RECENCY_DAYS
        ? "rfm:recency_days"
        : f.source.value === RfmMeasure.FREQUENCY
          ? "rfm:frequency"
          : "rfm:monetary";
    default:
      return "";
  }
}

async function segmentByKMeans(
  em: EntityManager,
  schema: string,
  req: SegmentContactsRequest,
  km: KMeansSegmentation,
  p: Paging,
): Promise<SegmentContactsResponse> {
  const windowMs =
    km.behaviourWindow === undefined || durationMs(km.behaviourWindow) === 0
      ? 90 * dayMs
      : durationMs(km.behaviourWindow);
  const from = new Date(p.asOf.getTime() - windowMs).toISOString();
  const selects: string[] = [];
  const params: unknown[] = [];
  km.features.forEach((f, j) => {
    checkContract(ClusterFeatureSchema, f);
    if (f.source.case === "attributeKey") {
      selects.push(
        `(select coalesce((a->'value'->>'numberValue')::float8, (a->'value'->>'intValue')::float8) from jsonb_array_elements(c.attributes) a where a->>'key' = ? limit 1) as f${j}`,
      );
      params.push(f.source.value);
    } else if (f.source.case === "interactionCount") {
      selects.push(
        `(select count(*)::float8 from ${schema}."crm_interaction" i where i.contact_id = c.id and i.type = ? and i.occurred_at > ?::timestamptz and i.occurred_at <= ?::timestamptz) as f${j}`,
      );
      params.push(f.source.value, from, p.asOf.toISOString());
    } else {
      selects.push(`null::float8 as f${j}`);
    }
  });
  const population = populationSql(schema, req.contactIds, req.contacts, p.asOf);
  const rows = (await em.execute(
    `with pop as (${population.sql}) select c.id${selects.map((s) => `, ${s}`).join("")} from pop c order by c.id limit ?`,
    [...population.params, ...params, maxClusterPopulation + 1],
  )) as Record<string, string | number | null>[];
  if (rows.length > maxClusterPopulation) {
    throw new FailedPreconditionError(
      `k-means clusters at most ${maxClusterPopulation} contacts; narrow the population with contact_ids`,
    );
  }
  if (rows.length < km.k) throw new InvalidInputError("kmeans.k", `exceeds the population of ${rows.length} contacts`);
  const ids = rows.map((r) => String(r.id));
  const needsRfm = km.features.some((f) => f.source.case === "rfmMeasure");
  const measures = needsRfm
    ? new Map(
        (
          await loadMeasures(em, schema, km.transactions, {
            asOf: p.asOf,
            lookbackMs: 0,
            currency: "USD",
            contactIds: ids,
          })
        ).map((m) => [m.contactId, m]),
      )
    : new Map();
  // Raw features; missing values (no such attribute, no purchase for recency) become the mean.
  const raw = rows.map((r) =>
    km.features.map((f, j) => {
      if (f.source.case !== "rfmMeasure") {
        const v = r[`f${j}`];
        return v === null || v === undefined ? Number.NaN : Number(v);
      }
      const m = measures.get(String(r.id));
      if (f.source.value === RfmMeasure.RECENCY_DAYS) return m === undefined ? Number.NaN : m.recencyDays;
      if (f.source.value === RfmMeasure.FREQUENCY) return m?.frequency ?? 0;
      return m === undefined ? 0 : Number(m.monetaryMicros) / 1e6;
    }),
  );
  km.features.forEach((_, j) => {
    const present = raw.map((x) => x[j] as number).filter((v) => !Number.isNaN(v));
    const mean = present.length > 0 ? present.reduce((s, v) => s + v, 0) / present.length : 0;
    for (const x of raw) if (Number.isNaN(x[j] as number)) x[j] = mean;
  });
  let solution: ReturnType<typeof clusterKMeans>;
  try {
    solution = clusterKMeans(raw, {
      k: km.k,
      seed: km.seed,
      maxIterations: km.maxIterations === 0 ? 300 : km.maxIterations,
      restarts: km.restarts === 0 ? 10 : km.restarts,
      standardize: !km.skipStandardization,
    });
  } catch (err) {
    if (err instanceof RangeError)
      throw new InvalidInputError("kmeans.k", `exceeds the number of distinct contacts: ${err.message}`);
    throw err;
  }
  const after = p.after?.afterId;
  const start = after === undefined ? 0 : ids.findIndex((id) => id > after);
  const from0 = start === -1 ? ids.length : start;
  const pageIdx = req.countsOnly ? [] : [...ids.keys()].slice(from0, from0 + p.size);
  return create(SegmentContactsResponseSchema, {
    segments: solution.sizes.map((n, c) =>
      create(SegmentSchema, {
        key: `cluster-${c + 1}`,
        name: `Cluster ${c + 1}`,
        memberCount: BigInt(n),
        share: n / ids.length,
        centroid: solution.centroids[c] ?? [],
      }),
    ),
    members: pageIdx.map((i) =>
      create(SegmentMemberSchema, {
        contactId: ids[i] as string,
        segmentKeys: [`cluster-${(solution.assignments[i] as number) + 1}`],
        distanceToCentroid: solution.distances[i] as number,
      }),
    ),
    nextPageToken: req.countsOnly ? "" : nextToken(p, from0 + p.size < ids.length, ids[pageIdx.at(-1) ?? -1]),
    populationCount: BigInt(ids.length),
    unassignedCount: 0n,
    kmeans: {
      featureNames: km.features.map(featureName),
      inertia: solution.inertia,
      silhouette: solution.silhouette,
      iterations: solution.iterations,
    },
  });
}
