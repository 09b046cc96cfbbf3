/**
 * Send-time learning: six simulated months (182 days) of follow-up sends, 200 a day, in
 * America/Chicago with a weekday 08:00–18:00 window. Each send's earliest instant is a uniformly
 * random minute moved into the window; the policy picks its hour among the window's hours of the
 * next day. The open probability per hour of the week is known to the simulation (a mid-morning
 * peak, strongest Tuesday to Thursday: `morningPeakProfile`), never to the policies. Opens reach
 * the model at the end of each day. Three policies see the same stream (same seed): Thompson
 * sampling over hour-of-week arms (the scheduler's model), uniformly random send hours (the
 * baseline), and the oracle that knows the probabilities (the ceiling). Reported: open rates, the
 * lift of Thompson over random (overall and per month, as it learns), and the share of the
 * oracle's lift it captured. Averaged over several seeds.
 *
 * `node bench/email-send-time.ts [days] [sendsPerDay] [seeds]` runs it alone.
 */
import { morningPeakProfile, simulateSendTimes } from "../agents/email/send-time/simulate.ts";

/** Options of the scenario. */
export interface SendTimeBenchOptions {
  days?: number;
  sendsPerDay?: number;
  seeds?: number;
}

/** What the scenario measured. */
export interface SendTimeBenchResult {
  days: number;
  sendsPerDay: number;
  seeds: number;
  openRateThompson: number;
  openRateUniform: number;
  openRateOracle: number;
  /** Thompson's open rate over random's, minus 1. */
  lift: number;
  /** The oracle's open rate over random's, minus 1. */
  oracleLift: number;
  /** (Thompson − random) / (oracle − random). */
  captured: number;
  /** Lift in each sixth of the run (a month of six). */
  liftByMonth: number[];
  seconds: number;
}

const round = (x: number, d = 4) => Math.round(x * 10 ** d) / 10 ** d;

/** Runs the scenario. */
export function benchEmailSendTime(o: SendTimeBenchOptions = {}): SendTimeBenchResult {
  const days = o.days ?? 182;
  const sendsPerDay = o.sendsPerDay ?? 200;
  const seeds = o.seeds ?? 3;
  const t0 = performance.now();
  const totals = { thompson: 0, uniform: 0, oracle: 0, sends: 0 };
  // Six equal periods: months of a six-month run.
  const monthly = Array.from({ length: 6 }, () => ({ thompson: 0, uniform: 0 }));
  const period = (d: number) =>
    monthly[Math.min(5, Math.floor((d * 6) / days))] as { thompson: number; uniform: number };
  for (let seed = 1; seed <= seeds; seed++) {
    const base = {
      openRate: morningPeakProfile,
      zone: "America/Chicago",
      window: { days: new Set([1, 2, 3, 4, 5]), startMinute: 8 * 60, endMinute: 18 * 60 },
      days,
      sendsPerDay,
      start: new Date("2025-01-06T00:00:00Z"),
      seed: seed * 7919,
    };
    const ts = simulateSendTimes({ ...base, policy: "thompson" });
    const un = simulateSendTimes({ ...base, policy: "uniform" });
    const or = simulateSendTimes({ ...base, policy: "oracle" });
    totals.thompson += ts.opens;
    totals.uniform += un.opens;
    totals.oracle += or.opens;
    totals.sends += ts.sends;
    ts.opensPerDay.forEach((n, d) => {
      period(d).thompson += n;
    });
    un.opensPerDay.forEach((n, d) => {
      period(d).uniform += n;
    });
  }
  const rate = (opens: number) => opens / totals.sends;
  return {
    days,
    sendsPerDay,
    seeds,
    openRateThompson: round(rate(totals.thompson)),
    openRateUniform: round(rate(totals.uniform)),
    openRateOracle: round(rate(totals.oracle)),
    lift: round(totals.thompson / totals.uniform - 1),
    oracleLift: round(totals.oracle / totals.uniform - 1),
    captured: round((totals.thompson - totals.uniform) / (totals.oracle - totals.uniform)),
    liftByMonth: monthly.map((m) => round(m.thompson / m.uniform - 1)),
    seconds: round((performance.now() - t0) / 1000, 2),
  };
}

if (import.meta.main) {
  const [days, sendsPerDay, seeds] = process.argv.slice(2).map(Number);
  const opts: SendTimeBenchOptions = {};
  if (days) opts.days = days;
  if (sendsPerDay) opts.sendsPerDay = sendsPerDay;
  if (seeds) opts.seeds = seeds;
  process.stdout.write(`${JSON.stringify(benchEmailSendTime(opts), null, 2)}\n`);
}
