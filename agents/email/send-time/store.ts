/**
 * The send-time model's persisted arms: one row per (segment, hour-of-week) in
 * `email_send_time_arm` with its sends (`trials`) and its sends that were opened or clicked
 * (`successes`). A send counts as a trial when it goes out and as a success at its first open or
 * click, so a recent send not yet opened weighs as a failure until it is (a slightly pessimistic
 * posterior that corrects itself as engagement arrives).
 */
import type { EntityManager } from "@mikro-orm/postgresql";
import { type SendingWindow, type SendSlot, sendSlots } from "../sequences/plan.ts";
import { type ArmCounts, thompsonChoose, type Uniform } from "./thompson.ts";

/** The arms of a segment (at most 168 rows). */
export async function loadArms(em: EntityManager, schema: string, segmentKey: string): Promise<Map<number, ArmCounts>> {
  const rows = await em
    .getConnection()
    .execute<{ arm: number; trials: string; successes: string }[]>(
      `select arm, trials, successes from "${schema}"."email_send_time_arm" where segment_key = ? limit 168`,
      [segmentKey],
      "all",
      em.getTransactionContext(),
    );
  return new Map(rows.map((r) => [Number(r.arm), { trials: Number(r.trials), successes: Number(r.successes) }]));
}

/** Adds sends (`trials`) and opens (`successes`) to arms of a segment. */
export async function addToArms(
  em: EntityManager,
  schema: string,
  updates: readonly { segmentKey: string; arm: number; trials: number; successes: number }[],
  now: Date,
): Promise<void> {
  if (updates.length === 0) return;
  await em.getConnection().execute(
    `insert into "${schema}"."email_send_time_arm" (segment_key, arm, trials, successes, updated_at)
     select u.segment_key, u.arm, sum(u.trials), sum(u.successes), ? from jsonb_to_recordset(?::jsonb) as u(segment_key text, arm int, trials int, successes int)
     group by u.segment_key, u.arm
     on conflict (segment_key, arm) do update set trials = email_send_time_arm.trials + excluded.trials,
       successes = email_send_time_arm.successes + excluded.successes, updated_at = excluded.updated_at`,
    [
      now,
      JSON.stringify(
        updates.map((u) => ({ segment_key: u.segmentKey, arm: u.arm, trials: u.trials, successes: u.successes })),
      ),
    ],
    "run",
    em.getTransactionContext(),
  );
}

/**
 * Thompson's choice of a send slot: the candidate hours from `earliest` through the next
 * `horizonHours` inside the window, one posterior draw per arm, the largest wins.
 */
export function chooseSlot(
  earliest: Date,
  zone: string,
  window: SendingWindow | undefined,
  arms: ReadonlyMap<number, ArmCounts>,
  u: Uniform,
  horizonHours = 24,
): SendSlot {
  const slots = sendSlots(earliest, zone, window, horizonHours);
  const i = thompsonChoose(
    slots.map((s) => s.arm),
    arms,
    u,
  );
  return slots[i] as SendSlot;
}
