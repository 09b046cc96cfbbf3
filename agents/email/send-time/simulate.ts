/**
 * A simulated engagement stream for the send-time model: a known open probability per hour of the
 * week, sends whose earliest instant falls anywhere in the sending window, and a policy choosing
 * each send's slot among the window's hours of the next day — Thompson sampling (the model as the
 * scheduler runs it) or uniformly at random (the baseline). Opens are drawn from the known
 * probabilities with a seeded generator and reach the model at the end of each simulated day, as
 * engagement arrives late in practice. Used by the convergence test and `bench/email-send-time.ts`.
 */
import { nextAllowedInstant, type SendingWindow, sendSlots } from "../sequences/plan.ts";
import { type ArmCounts, seededUniform, thompsonChoose } from "./thompson.ts";

/** Options of {@link simulateSendTimes}. */
export interface SimulationOptions {
  /** `thompson` or `uniform` (random slot) or `oracle` (the best slot, knowing the probabilities). */
  readonly policy: "thompson" | "uniform" | "oracle";
  /** Open probability of a send in hour-of-week `arm` (0 = Monday 00:00 local). */
  readonly openRate: (arm: number) => number;
  readonly zone: string;
  readonly window: SendingWindow;
  /** Simulated days. */
  readonly days: number;
  /** Sends per day. */
  readonly sendsPerDay: number;
  /** First simulated day (UTC midnight). */
  readonly start: Date;
  readonly seed: number;
  /** Slot horizon, hours (default 24). */
  readonly horizonHours?: number;
}

/** What a simulation measured. */
export interface SimulationResult {
  readonly sends: number;
  readonly opens: number;
  readonly openRate: number;
  /** Sends per chosen arm. */
  readonly chosen: ReadonlyMap<number, number>;
  /** Opens per day, for a learning curve. */
  readonly opensPerDay: readonly number[];
  /** The learnt counts per arm at the end. */
  readonly arms: ReadonlyMap<number, ArmCounts>;
}

/** Runs one policy over the stream; the same seed gives every policy the same earliest instants. */
export function simulateSendTimes(o: SimulationOptions): SimulationResult {
  const schedule = seededUniform(o.seed);
  const coin = seededUniform(o.seed ^ 0x9e3779b9);
  const draws = seededUniform(o.seed ^ 0x85ebca6b);
  const arms = new Map<number, { trials: number; successes: number }>();
  const chosen = new Map<number, number>();
  const opensPerDay: number[] = [];
  let opens = 0;
  let sends = 0;
  for (let d = 0; d < o.days; d++) {
    const dayStart = o.start.getTime() + d * 86_400_000;
    const pending: { arm: number; opened: boolean }[] = [];
    let dayOpens = 0;
    for (let i = 0; i < o.sendsPerDay; i++) {
      // The earliest instant: a uniformly random minute of the day, moved into the window.
      const raw = new Date(dayStart + Math.floor(schedule() * 1440) * 60_000);
      const slots = sendSlots(nextAllowedInstant(raw, o.zone, o.window), o.zone, o.window, o.horizonHours ?? 24);
      // Drawn for every policy, so the open coins line up across policies.
      const u = coin();
      let pick: number;
      if (o.policy === "uniform") pick = Math.min(slots.length - 1, Math.floor(u * slots.length));
      else if (o.policy === "oracle") {
        pick = 0;
        slots.forEach((s, j) => {
          if (o.openRate(s.arm) > o.openRate((slots[pick] as (typeof slots)[number]).arm)) pick = j;
        });
      } else
        pick = thompsonChoose(
          slots.map((s) => s.arm),
          arms,
          draws,
        );
      const arm = (slots[pick] as (typeof slots)[number]).arm;
      const opened = coin() < o.openRate(arm);
      chosen.set(arm, (chosen.get(arm) ?? 0) + 1);
      pending.push({ arm, opened });
      sends++;
      if (opened) {
        opens++;
        dayOpens++;
      }
    }
    for (const p of pending) {
      const a = arms.get(p.arm) ?? { trials: 0, successes: 0 };
      a.trials++;
      if (p.opened) a.successes++;
      arms.set(p.arm, a);
    }
    opensPerDay.push(dayOpens);
  }
  return { sends, opens, openRate: opens / Math.max(1, sends), chosen, opensPerDay, arms };
}

/**
 * The open-rate profile the bench and tests use: a base rate with a mid-morning peak on Tuesday to
 * Thursday (arm of Tuesday 10:00 = 34 is the optimum, 0.30), weaker on Monday and Friday.
 */
export function morningPeakProfile(arm: number): number {
  const day = Math.floor(arm / 24); // 0 = Monday
  const hour = arm % 24;
  const dayFactor = day >= 1 && day <= 3 ? 1 : day === 0 || day === 4 ? 0.6 : 0.3;
  const dayBonus = day === 1 ? 0.02 : 0;
  return 0.1 + (0.18 + dayBonus) * dayFactor * Math.exp(-((hour - 10) ** 2) / 6);
}
