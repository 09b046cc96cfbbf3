/**
 * The loop of a worker whose work waits in table rows (due sends, due steps, due segments): rows
 * are the durable state, so a timer here is only when to look again, never what is due. A round
 * that found a full batch runs the next one at once; an idle one sleeps `pollMs` (or less, when the
 * round knows the next due time), and `wake()` cuts the sleep short (or skips the next one, when
 * it comes during a round) after this process stored work. A failing round (the database away) is logged and retried with exponential backoff.
 */
import type { Logger } from "../log/index.ts";

/** What a round found. */
export interface PollRound {
  /** Work may be left: run the next round at once. */
  readonly busy: boolean;
  /** When idle, look again after this many ms instead of `pollMs` (never longer than it). */
  readonly waitMs?: number | undefined;
}

/** Options of {@link startPollLoop}. */
export interface PollLoopOptions {
  /** Name in log lines, e.g. `newsletter worker`. */
  readonly name: string;
  readonly round: () => Promise<PollRound>;
  /** Sleep between idle rounds, ms. */
  readonly pollMs: number;
  /** Longest sleep after failed rounds, ms (default 30 s). */
  readonly maxBackoffMs?: number;
  readonly log: Pick<Logger, "warn">;
}

/** A started loop. */
export interface PollLoop {
  /** Ends the sleep now (an in-process hint: the next poll finds the rows anyway). */
  wake(): void;
  /** Stops after the current round. */
  stop(): Promise<void>;
}

/** Starts the loop; see the file comment. */
export function startPollLoop(opts: PollLoopOptions): PollLoop {
  let stopped = false;
  let wakeUp: (() => void) | undefined;
  // A wake that came during a round: the work it announces may have been stored after the round's
  // query, so the next round runs without sleeping.
  let woken = false;
  const loop = (async () => {
    let failures = 0;
    while (!stopped) {
      let wait = opts.pollMs;
      woken = false;
      try {
        const r = await opts.round();
        failures = 0;
        if (r.busy) continue;
        if (r.waitMs !== undefined) wait = Math.max(0, Math.min(opts.pollMs, r.waitMs));
      } catch (err) {
        failures++;
        wait = Math.min(opts.maxBackoffMs ?? 30_000, opts.pollMs * 2 ** failures);
        opts.log.warn(`${opts.name} round failed`, {
          error: err instanceof Error ? err.message : String(err),
          failures,
        });
      }
      if (stopped) break;
      if (woken && failures === 0) continue;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        wakeUp = () => {
          clearTimeout(t);
          resolve();
        };
      });
      wakeUp = undefined;
    }
  })();
  return {
    wake: () => {
      woken = true;
      wakeUp?.();
    },
    async stop() {
      stopped = true;
      wakeUp?.();
      await loop;
    },
  };
}
