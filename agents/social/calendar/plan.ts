/**
 * The planner: items slotted greedily into channel cadences.
 *
 * Each channel's rule is expanded over the window (expand.ts); a slot that would overlap the
 * channel's previous one (a rule more frequent than its slot length) is dropped, and slots on a
 * blackout day of the channel are closed. Items are taken earliest due first (an item without a
 * due time is due at the window's end), then by priority (urgent, normal, bulk), then in request
 * order, and each gets, on every channel it names, the earliest open, free slot starting between
 * its not-before and due times. Posts on one platform are spaced by their slot length: filling a
 * slot blocks every overlapping slot of the other channels on the same platform (two accounts on
 * one network never post on top of each other; channels without a platform are not spaced).
 *
 * Free slots are found with a "next free slot" union-find per channel (path halving), so planning
 * costs about one binary search per item and channel however full the calendar gets.
 */
import { createHash } from "node:crypto";
import { Priority } from "../../../gen/mesh/common/v1/types_pb.ts";
import {
  type PlanContentCalendarRequest,
  SocialPlatform,
  UnscheduledReason,
} from "../../../gen/mesh/social/v1/social_service_pb.ts";
import { expandRule } from "./expand.ts";
import { dateString, localIso } from "./time-zone.ts";

/** One item placed in one channel's slot. */
export interface PlannedSlot {
  readonly itemId: string;
  readonly title: string;
  readonly url: string;
  readonly channelId: string;
  readonly platform: SocialPlatform;
  readonly start: Date;
  readonly end: Date;
  readonly localStart: string;
  readonly uid: string;
}

/** What the planner decided. */
export interface Plan {
  /** By start, then channel, then item. */
  readonly slots: PlannedSlot[];
  readonly unscheduled: { itemId: string; channelId: string; reason: UnscheduledReason }[];
  readonly utilisation: { channelId: string; slotCount: number; filledCount: number }[];
}

/** Slot length when a channel gives none. */
export const defaultSlotMs = 30 * 60_000;

/** UID of the VEVENT of `item` on `channel`: the same across re-plans of the calendar. */
export function slotUid(calendarId: string, itemId: string, channelId: string): string {
  const h = createHash("sha256").update(`${calendarId}\n${itemId}\n${channelId}`).digest("hex");
  return `${h.slice(0, 32)}@social.marketing-mesh`;
}

interface ChannelSlots {
  readonly id: string;
  readonly platform: SocialPlatform;
  readonly starts: number[];
  readonly ends: number[];
  /** Open slots (not blacked out) before index i. */
  readonly openBefore: Int32Array;
  /** Union-find towards the next available slot; index `starts.length` is the sentinel. */
  readonly next: Int32Array;
  filled: number;
  open: number;
}

function find(c: ChannelSlots, i: number): number {
  const p = c.next;
  while (p[i] !== i) {
    p[i] = p[p[i] as number] as number;
    i = p[i] as number;
  }
  return i;
}

function close(c: ChannelSlots, i: number): void {
  c.next[i] = i + 1;
}

/** First index whose value is ≥ `v` (or > `v` when `strict`). */
function bound(a: readonly number[], v: number, strict: boolean): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const x = a[mid] as number;
    if (x < v || (strict && x === v)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function durationMs(d: { seconds: bigint; nanos: number } | undefined): number {
  if (d === undefined) return defaultSlotMs;
  const ms = Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
  return ms > 0 ? ms : defaultSlotMs;
}

const priorityRank = (p: Priority) => (p === Priority.URGENT ? 0 : p === Priority.BULK ? 2 : 1);

/** Plans `req`, read as validated (the skill checks the contract and the rules it cannot express). */
export function planCalendar(req: PlanContentCalendarRequest): Plan {
  const window = req.window as NonNullable<PlanContentCalendarRequest["window"]>;
  const wStart = Number(window.start?.seconds ?? 0n) * 1000 + Math.floor((window.start?.nanos ?? 0) / 1e6);
  const wEnd = Number(window.end?.seconds ?? 0n) * 1000 + Math.floor((window.end?.nanos ?? 0) / 1e6);
  const tz = req.timeZone;

  const channels = new Map<string, ChannelSlots>();
  req.channels.forEach((ch, ci) => {
    const len = durationMs(ch.slotDuration);
    const raw = expandRule(ch.rrule, tz, new Date(wStart), new Date(wEnd), `channels[${ci}].rrule`);
    // Blackout days of this channel, merged, as [first, last] date strings.
    const days = req.blackouts
      .filter((b) => b.channelIds.length === 0 || b.channelIds.includes(ch.channelId))
      .map((b) => [b.startDate, b.endDate || b.startDate] as const)
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const merged: [string, string][] = [];
    for (const [s, e] of days) {
      const last = merged[merged.length - 1];
      if (last !== undefined && s <= last[1]) {
        if (e > last[1]) last[1] = e;
      } else merged.push([s, e]);
    }
    const blacked = (date: string) => {
      let lo = 0;
      let hi = merged.length - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const [s, e] = merged[mid] as [string, string];
        if (date < s) hi = mid - 1;
        else if (date > e) lo = mid + 1;
        else return true;
      }
      return false;
    };
    const starts: number[] = [];
    const ends: number[] = [];
    const closedAt: boolean[] = [];
    for (const s of raw) {
      const t = s.start.getTime();
      // A slot overlapping the channel's previous one conflicts with it: the earlier slot stays.
      if (ends.length > 0 && t < (ends[ends.length - 1] as number)) continue;
      starts.push(t);
      ends.push(t + len);
      closedAt.push(blacked(dateString(s.wall)));
    }
    const n = starts.length;
    const next = new Int32Array(n + 1);
    const openBefore = new Int32Array(n + 1);
    const c: ChannelSlots = {
      id: ch.channelId,
      platform: ch.platform,
      starts,
      ends,
      openBefore,
      next,
      filled: 0,
      open: 0,
    };
    for (let i = 0; i <= n; i++) next[i] = i;
    for (let i = 0; i < n; i++) {
      openBefore[i + 1] = (openBefore[i] as number) + (closedAt[i] ? 0 : 1);
      if (closedAt[i]) close(c, i);
    }
    c.open = openBefore[n] as number;
    channels.set(ch.channelId, c);
  });

  const byPlatform = new Map<SocialPlatform, ChannelSlots[]>();
  for (const c of channels.values()) {
    if (c.platform === SocialPlatform.UNSPECIFIED) continue;
    byPlatform.set(c.platform, [...(byPlatform.get(c.platform) ?? []), c]);
  }

  const ms = (t: { seconds: bigint; nanos: number } | undefined, fallback: number) =>
    t === undefined ? fallback : Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6);
  const order = req.items
    .map((item, index) => ({ item, index, due: ms(item.dueBy, wEnd) }))
    .sort(
      (a, b) => a.due - b.due || priorityRank(a.item.priority) - priorityRank(b.item.priority) || a.index - b.index,
    );

  const slots: PlannedSlot[] = [];
  const unscheduled: Plan["unscheduled"] = [];
  for (const { item } of order) {
    const notBefore = ms(item.notBefore, wStart);
    const dueBy = ms(item.dueBy, wEnd);
    for (const channelId of item.channelIds) {
      const c = channels.get(channelId) as ChannelSlots; // checked by the contract
      const miss = (reason: UnscheduledReason) => unscheduled.push({ itemId: item.itemId, channelId, reason });
      if (notBefore >= wEnd || dueBy < wStart) {
        miss(UnscheduledReason.OUTSIDE_WINDOW);
        continue;
      }
      const lo = bound(c.starts, Math.max(notBefore, wStart), false);
      const hi = bound(c.starts, Math.min(dueBy, wEnd), true);
      if (lo >= hi) {
        miss(UnscheduledReason.NO_SLOT_IN_RANGE);
        continue;
      }
      if ((c.openBefore[hi] as number) - (c.openBefore[lo] as number) === 0) {
        miss(UnscheduledReason.BLACKED_OUT);
        continue;
      }
      const i = find(c, lo);
      if (i >= hi) {
        miss(UnscheduledReason.NO_FREE_SLOT);
        continue;
      }
      const start = c.starts[i] as number;
      const end = c.ends[i] as number;
      close(c, i);
      c.filled++;
      // Space the platform: the other channels' slots overlapping this one are no longer free.
      for (const other of byPlatform.get(c.platform) ?? []) {
        if (other === c) continue;
        for (
          let j = bound(other.ends, start, true);
          j < other.starts.length && (other.starts[j] as number) < end;
          j++
        ) {
          close(other, j);
        }
      }
      slots.push({
        itemId: item.itemId,
        title: item.title,
        url: item.url,
        channelId,
        platform: c.platform,
        start: new Date(start),
        end: new Date(end),
        localStart: localIso(new Date(start), tz),
        uid: slotUid(req.calendarId, item.itemId, channelId),
      });
    }
  }
  slots.sort(
    (a, b) =>
      a.start.getTime() - b.start.getTime() ||
      (a.channelId < b.channelId ? -1 : a.channelId > b.channelId ? 1 : 0) ||
      (a.itemId < b.itemId ? -1 : a.itemId > b.itemId ? 1 : 0),
  );
  const utilisation = req.channels.map((ch) => {
    const c = channels.get(ch.channelId) as ChannelSlots;
    return { channelId: ch.channelId, slotCount: c.open, filledCount: c.filled };
  });
  return { slots, unscheduled, utilisation };
}
