/**
 * The scheduler of time-driven segment re-evaluation: stored segments whose rule tree has windows
 * or relative dates change membership as time passes with no event ("≥ 2 page views in the last 30
 * days" stops holding when a view leaves the window). Each such segment stores when it is next due
 * (`crm_segment.next_evaluation_at`, set by every full evaluation and brought forward by events;
 * see next-change.ts for how it is computed); this worker runs the full evaluation then.
 *
 * What it guarantees: a time-driven change of membership is applied — and announced, once, as
 * SegmentMembershipChanged with cause `schedule` — no later than `minMs` after it happens (the
 * spacing floor of RecheckLimits, one minute by default) plus the poll interval and any backlog
 * of due segments; windowed segments are in any case re-evaluated at least every `maxMs` (15 min
 * by default), which also catches changes no event announced. Segments whose tree does not depend
 * on time are never scheduled.
 *
 * Durability: the due time lives only in the table; timers merely decide when to look again. Each
 * segment is claimed in its own transaction (`FOR NO KEY UPDATE SKIP LOCKED`: instances never wait
 * for or evaluate the same segment at once, and the lock does not block the foreign-key checks of
 * concurrent membership inserts), evaluated, given its next due time and committed with its events
 * in the outbox. A worker killed midway loses its transaction and its lock with its connection, so
 * the segment is still due and the next round on any instance evaluates it.
 */
import { fromJson } from "@bufbuild/protobuf";
import { SegmentDefinitionSchema } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { Running } from "../../../lib/bus/index.ts";
import type { MeshConfig } from "../../../lib/config/index.ts";
import { startPollLoop } from "../../../lib/db/index.ts";
import type { Logger } from "../../../lib/log/index.ts";
import { type RecheckLimits, timeDependence } from "./next-change.ts";
import { runFull, type SegmentRow, type StoredSegmentDeps, segmentColumns } from "./stored.ts";

/** Options of the scheduler. */
export interface SegmentSchedulerOptions extends StoredSegmentDeps {
  readonly log: Pick<Logger, "warn">;
  /** Segments evaluated per round at most (default 20); a full round is followed by another at once. */
  readonly batch?: number;
  /** Longest wait between rounds when idle, ms (default 5000); shorter when a segment falls due sooner. */
  readonly pollMs?: number;
}

/** What one round did. */
export interface ScheduleRound {
  /** Keys evaluated, in order. */
  readonly evaluated: string[];
  /** Keys found due whose tree no longer depends on time: unscheduled without an evaluation. */
  readonly cleared: string[];
  /** Keys whose evaluation failed: postponed by `maxMs` (logged). */
  readonly failed: string[];
  joined: number;
  left: number;
}

/** The scheduler: `round` evaluates what is due now, `start` runs rounds until stopped. */
export interface SegmentScheduler {
  round(): Promise<ScheduleRound>;
  start(): Running;
}

/** The recheck limits of the configuration (MESH_SEGMENT_RECHECK_MIN_MS, MESH_SEGMENT_RECHECK_MAX_MS). */
export function recheckLimitsOf(
  config: Pick<MeshConfig, "segmentRecheckMinMs" | "segmentRecheckMaxMs">,
): RecheckLimits {
  return { minMs: config.segmentRecheckMinMs, maxMs: config.segmentRecheckMaxMs };
}

/** Creates the scheduler. */
export function createSegmentScheduler(opts: SegmentSchedulerOptions): SegmentScheduler {
  const schema = `"${opts.db.schema}"`;
  const batch = opts.batch ?? 20;
  const pollMs = opts.pollMs ?? 5_000;

  /** Claims, evaluates and reschedules one due segment; false when none is due (or all due ones are taken). */
  async function one(out: ScheduleRound): Promise<boolean> {
    let claimed: string | undefined;
    try {
      return await opts.db.transaction(async (em) => {
        const rows = (await em.execute(
          `select ${segmentColumns} from ${schema}."crm_segment" where next_evaluation_at <= ? ` +
            "order by next_evaluation_at, key limit 1 for no key update skip locked",
          [opts.now()],
        )) as SegmentRow[];
        const row = rows[0];
        if (row === undefined) return false;
        claimed = row.key;
        const def = fromJson(SegmentDefinitionSchema, row.definition);
        if (timeDependence(def.condition) === "none") {
          await em.execute(`update ${schema}."crm_segment" set next_evaluation_at = null where key = ?`, [row.key]);
          out.cleared.push(row.key);
          return true;
        }
        const r = await runFull(opts, em, row, def, { subject: "schedule", msgId: "" });
        out.evaluated.push(row.key);
        out.joined += r.joined;
        out.left += r.left;
        return true;
      });
    } catch (err) {
      if (claimed === undefined) throw err;
      // A stored tree that no longer compiles (or a query that fails) must not hold the head of the
      // queue: it is postponed by the longest interval and logged, and the round goes on.
      const key = claimed;
      const until = new Date(opts.now().getTime() + (opts.recheck?.maxMs ?? 15 * 60_000));
      opts.log.warn("scheduled segment evaluation failed; postponed", {
        key,
        until: until.toISOString(),
        error: err instanceof Error ? err.message : String(err),
      });
      await opts.db
        .fork()
        .execute(
          `update ${schema}."crm_segment" set next_evaluation_at = ? where key = ? and next_evaluation_at <= ?`,
          [until, key, opts.now()],
        );
      out.failed.push(key);
      return true;
    }
  }

  async function round(): Promise<ScheduleRound> {
    const out: ScheduleRound = { evaluated: [], cleared: [], failed: [], joined: 0, left: 0 };
    for (let i = 0; i < batch; i++) {
      if (!(await one(out))) break;
    }
    return out;
  }

  /** Milliseconds until the earliest due segment (0 when one is due), or undefined when none is scheduled. */
  async function untilNext(): Promise<number | undefined> {
    const rows = (await opts.db
      .fork()
      .execute(`select min(next_evaluation_at) as due from ${schema}."crm_segment"`)) as { due: Date | null }[];
    const due = rows[0]?.due;
    return due === null || due === undefined ? undefined : new Date(due).getTime() - opts.now().getTime();
  }

  return {
    round,
    start() {
      return startPollLoop({
        name: "segment scheduler",
        round: async () => {
          const r = await round();
          const busy = r.evaluated.length + r.cleared.length + r.failed.length >= batch;
          // Wake at the earliest due time, but look again at least every pollMs (another instance
          // or an event may bring a segment forward) and at most every 200 ms (a due segment
          // another instance is evaluating stays due until it commits).
          const next = busy ? undefined : await untilNext();
          return { busy, waitMs: next === undefined ? undefined : Math.max(200, next) };
        },
        pollMs,
        maxBackoffMs: 60_000,
        log: opts.log,
      });
    },
  };
}
