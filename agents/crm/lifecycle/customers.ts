/**
 * From raw transactions to what the models need per customer: purchase occasions on a UTC-day
 * grid, the BG/NBD summary (x, t_x, T), the first tenure spell for Kaplan–Meier, and the lifecycle
 * stage.
 *
 * Occasions: a customer's transactions are summed per UTC day; a day whose net amount is positive
 * is one purchase occasion (several orders on one day are one occasion, as lifetimes' daily
 * summaries count them); a day with a net refund is no occasion but its amount still counts
 * against the customer's spend. All times are whole days, so T, t_x and tenures are integers.
 *
 * Lapses and churn: a gap between occasions longer than the inactivity limit is a lapse; the
 * customer is taken to have churned when the limit ran out (last occasion + limit). A customer
 * churns explicitly on a churn event's day. The first spell — first occasion to the first churn of
 * either kind — is the tenure Kaplan–Meier sees; a customer who has not churned by `as_of` is
 * censored there. A customer who buys after a lapse or after a churn event has returned
 * ("reactivated"); later spells are not in the survival curve (one observation per customer).
 */

/** Milliseconds per day. */
export const dayMs = 86_400_000;

/** The UTC day number of an instant (days since 1970-01-01). */
export function dayOf(ms: number): number {
  return Math.floor(ms / dayMs);
}

/** A customer's history on the day grid. */
export interface CustomerHistory {
  readonly contactId: string;
  /** Days with a positive net amount, ascending. */
  readonly occasionDays: Int32Array;
  /** Net amount of each occasion day, micros. */
  readonly occasionMicros: readonly bigint[];
  /** Net amount of all the customer's transactions (occasions and refunds), micros. */
  readonly netMicros: bigint;
}

/** Collects transactions per customer and UTC day. */
export class PurchaseLedger {
  readonly #byContact = new Map<string, Map<number, bigint>>();

  /** Adds a transaction (contact id already normalised). */
  add(contactId: string, atMs: number, amountMicros: bigint): void {
    let days = this.#byContact.get(contactId);
    if (days === undefined) {
      days = new Map();
      this.#byContact.set(contactId, days);
    }
    const day = dayOf(atMs);
    days.set(day, (days.get(day) ?? 0n) + amountMicros);
  }

  /** Contacts seen. */
  get contacts(): number {
    return this.#byContact.size;
  }

  /** The histories of contacts with at least one purchase occasion (refund-only contacts are not customers). */
  *histories(): Generator<CustomerHistory> {
    for (const [contactId, days] of this.#byContact) {
      const sorted = [...days.keys()].sort((a, b) => a - b);
      const occasionDays: number[] = [];
      const occasionMicros: bigint[] = [];
      let netMicros = 0n;
      for (const d of sorted) {
        const amount = days.get(d) as bigint;
        netMicros += amount;
        if (amount > 0n) {
          occasionDays.push(d);
          occasionMicros.push(amount);
        }
      }
      if (occasionDays.length > 0) {
        yield { contactId, occasionDays: Int32Array.from(occasionDays), occasionMicros, netMicros };
      }
    }
  }
}

/** BG/NBD summary in days: repeat occasions, day of the last from the first, days observed. */
export function repeatSummary(h: CustomerHistory, asOfDay: number): { x: number; tx: number; T: number } {
  const first = h.occasionDays[0] as number;
  const last = h.occasionDays[h.occasionDays.length - 1] as number;
  return { x: h.occasionDays.length - 1, tx: last - first, T: asOfDay - first };
}

/**
 * Mean value of the repeat occasions (Gamma-Gamma's m): net spend after the first occasion over
 * the x repeat occasions, refunds included; undefined for x = 0.
 */
export function repeatMeanMicros(h: CustomerHistory): number | undefined {
  const x = h.occasionDays.length - 1;
  if (x === 0) return undefined;
  return Number(h.netMicros - (h.occasionMicros[0] as bigint)) / x;
}

/** Mean value per occasion, refunds included, micros. */
export function meanOrderMicros(h: CustomerHistory): number {
  return Number(h.netMicros) / h.occasionDays.length;
}

/** The first spell: tenure in days from the first occasion, and whether it ended in churn. */
export function firstSpell(
  h: CustomerHistory,
  churnDays: readonly number[],
  asOfDay: number,
  inactivityDays: number,
): { tenureDays: number; churned: boolean } {
  const days = h.occasionDays;
  const first = days[0] as number;
  let end = Number.POSITIVE_INFINITY;
  for (const c of churnDays) if (c >= first && c < end) end = c;
  for (let i = 1; i < days.length; i++) {
    const prev = days[i - 1] as number;
    if ((days[i] as number) - prev > inactivityDays) {
      end = Math.min(end, prev + inactivityDays);
      break;
    }
  }
  const last = days[days.length - 1] as number;
  if (asOfDay - last > inactivityDays) end = Math.min(end, last + inactivityDays);
  return end <= asOfDay ? { tenureDays: end - first, churned: true } : { tenureDays: asOfDay - first, churned: false };
}

/** Lifecycle stages (the contract's CustomerLifecycleStage without UNSPECIFIED). */
export type Stage = "new" | "active" | "at_risk" | "churned" | "reactivated";

/** Boundaries of the stages. */
export interface StageSettings {
  /** A first purchase (or a return) at most this many days before `as_of` is recent. */
  readonly newWindowDays: number;
  /** Inactivity (days) after which a customer has churned. */
  readonly inactivityDays: number;
  /** P(alive) below this is at risk. */
  readonly atRiskBelow: number;
  /** P(alive) below this is churned. */
  readonly churnedBelow: number;
}

/** Whether a churn event is on or after the customer's last occasion (churned and not back since). */
export function explicitlyChurned(h: CustomerHistory, churnDays: readonly number[]): boolean {
  const last = h.occasionDays[h.occasionDays.length - 1] as number;
  return churnDays.some((c) => c >= last);
}

/**
 * The day of the customer's latest return: the first occasion after a lapse longer than the
 * inactivity limit or after a churn event; undefined when they never lapsed.
 */
export function latestReturnDay(
  h: CustomerHistory,
  churnDays: readonly number[],
  inactivityDays: number,
): number | undefined {
  const days = h.occasionDays;
  let latest: number | undefined;
  for (let i = 1; i < days.length; i++) {
    if ((days[i] as number) - (days[i - 1] as number) > inactivityDays) latest = days[i] as number;
  }
  for (const c of churnDays) {
    // The first occasion after the churn day (binary search).
    let lo = 0;
    let hi = days.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((days[mid] as number) <= c) lo = mid + 1;
      else hi = mid;
    }
    if (lo < days.length && (latest === undefined || (days[lo] as number) > latest)) latest = days[lo] as number;
  }
  return latest;
}

/**
 * The customer's stage, by the first rule that applies:
 * 1. churned — a churn event on or after the last occasion, or no occasion for longer than the
 *    inactivity limit;
 * 2. new — the first occasion is within the new-customer window;
 * 3. reactivated — the latest return (after a lapse or a churn event) is within that window;
 * 4. churned — P(alive) below `churnedBelow`;
 * 5. at risk — P(alive) below `atRiskBelow`;
 * 6. active.
 * Recent acquisitions and returns come before the model's P(alive): they were just seen alive,
 * and a day or two of history says little about their purchase rate.
 */
export function lifecycleStage(
  h: CustomerHistory,
  churnDays: readonly number[],
  asOfDay: number,
  probabilityAlive: number,
  s: StageSettings,
): Stage {
  const days = h.occasionDays;
  const last = days[days.length - 1] as number;
  if (explicitlyChurned(h, churnDays) || asOfDay - last > s.inactivityDays) return "churned";
  if (asOfDay - (days[0] as number) <= s.newWindowDays) return "new";
  const back = latestReturnDay(h, churnDays, s.inactivityDays);
  if (back !== undefined && asOfDay - back <= s.newWindowDays) return "reactivated";
  if (probabilityAlive < s.churnedBelow) return "churned";
  if (probabilityAlive < s.atRiskBelow) return "at_risk";
  return "active";
}
