/**
 * The live copy of the retry policies that every server keeps, whatever the System agent's placement,
 * and the retry policy source its mesh client and bus consumers read on every call and every failed
 * delivery.
 *
 * The copy subscribes to RetryPolicyChanged (a core subscription: every instance gets every event)
 * before it loads every policy with ManageRetries' list action — in process where the server opened
 * the System agent's schema, else through the mesh client, retried until the System agent answers.
 * Per target it keeps the entry with the highest revision seen, so an event that overtakes the load,
 * or events out of order, never bring back an older policy. A core subscription misses what is
 * published while the connection is down, so the copy loads everything again after a reconnect.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import type { Code } from "@connectrpc/connect";
import type { RetryPolicyChanged } from "../../gen/mesh/system/v1/system_events_pb.ts";
import {
  type ManageRetriesRequest,
  ManageRetriesRequestSchema,
  type ManageRetriesResponse,
  type RetryPolicyEntry,
  type RetryPolicy as RetryPolicyMessage,
  RetryTargetKind,
} from "../../gen/mesh/system/v1/system_service_pb.ts";
import { type Bus, decodeEvent, type Redelivery, type Running } from "../../lib/bus/index.ts";
import type { Logger } from "../../lib/log/index.ts";
import type { RetryPolicySource } from "../../lib/server/index.ts";
import { type SkillRetry, sleep } from "../../lib/transport/index.ts";
import { RetryPolicyChangedEvent } from "./events.ts";
import { backoffDelayMs, DEFAULT_RETRYABLE_RPC_CODES, resolvePolicy } from "./retry-policy.ts";

/** Options of {@link startLivePolicies}. */
export interface LivePoliciesOptions {
  /** The bus whose connection receives the change events. */
  bus: Bus;
  /** Logger. */
  log: Logger;
  /** Runs one ManageRetries call (a page of list_policies); `signal` aborts it when the copy stops. */
  manageRetries: (req: ManageRetriesRequest, signal: AbortSignal) => Promise<ManageRetriesResponse>;
  /** Delay before the next load after `failures` failed loads in a row (default: 250 ms doubling up to 5 s). */
  retryDelayMs?: (failures: number) => number;
  /** Random numbers in [0, 1) for the jitter (default Math.random). */
  random?: () => number;
}

/** A running live copy of the retry policies. */
export interface LivePolicies extends Running {
  /** The retry policy source backed by the copy (read live). */
  readonly source: Required<RetryPolicySource>;
  /** The policies held now, by kind, then name. */
  entries(): RetryPolicyEntry[];
  /** Resolves when the first load has ended, loaded or not (a failed one goes on in the background). */
  readonly firstAttempt: Promise<void>;
  /** Loads every policy again; resolves once a load succeeded (or the copy stopped). */
  reload(): Promise<void>;
}

const keyOf = (e: RetryPolicyEntry): string => `${e.target?.kind ?? 0}:${e.target?.name ?? ""}`;

/**
 * The client-side form of a skill's policy. RpcCode numbers are google.rpc.Code's, as are connect's
 * Code numbers, so a code is retryable when its number is listed.
 */
function skillRetryOf(p: RetryPolicyMessage, random: () => number): SkillRetry {
  const codes = new Set<number>(p.retryableRpcCodes.length > 0 ? p.retryableRpcCodes : DEFAULT_RETRYABLE_RPC_CODES);
  return {
    maxAttempts: p.maxAttempts,
    delayMs: (retry, previousDelayMs) => backoffDelayMs(p, retry, random, previousDelayMs),
    retryable: (code: Code) => codes.has(code),
    maxElapsedMs: p.maxElapsed === undefined ? undefined : durationMs(p.maxElapsed),
  };
}

/**
 * The redelivery of a message that failed on its `deliveryCount`th delivery: the policy's backoff
 * for that retry (without the previous delay, which a redelivery does not carry, decorrelated
 * jitter draws from the previous capped delay), giving up once the attempts are used.
 */
function redeliveryOf(p: RetryPolicyMessage, deliveryCount: number, random: () => number): Redelivery {
  const retry = Math.max(1, Math.floor(deliveryCount));
  return { giveUp: deliveryCount >= p.maxAttempts, delayMs: backoffDelayMs(p, retry, random) };
}

/** Subscribes to policy changes, then loads every policy (in the background until one load succeeds). */
export async function startLivePolicies(opts: LivePoliciesOptions): Promise<LivePolicies> {
  const { bus, log } = opts;
  const random = opts.random ?? Math.random;
  const retryDelayMs = opts.retryDelayMs ?? ((n: number) => Math.min(5000, 250 * 2 ** (n - 1)));
  let held = new Map<string, RetryPolicyEntry>();
  // What the source reads, rebuilt on every change (lookups run on every call and failed delivery).
  let list: RetryPolicyEntry[] = [];
  let skills = new Map<string, SkillRetry>();
  // Entries received by event since the current load began: they win over it when newer.
  const touched = new Map<string, RetryPolicyEntry>();
  const stopper = new AbortController();
  let stopped = false;

  const rebuild = (): void => {
    list = [...held.values()].sort(
      (a, b) =>
        (a.target?.kind ?? 0) - (b.target?.kind ?? 0) || (a.target?.name ?? "").localeCompare(b.target?.name ?? ""),
    );
    skills = new Map();
    for (const e of list) {
      if (e.target?.kind === RetryTargetKind.SKILL && e.policy !== undefined) {
        skills.set(e.target.name, skillRetryOf(e.policy, random));
      }
    }
  };

  const apply = (entry: RetryPolicyEntry): void => {
    if (entry.target === undefined || entry.policy === undefined) return;
    const key = keyOf(entry);
    const current = held.get(key);
    if (current !== undefined && current.revision >= entry.revision) return;
    held.set(key, entry);
    touched.set(key, entry);
    rebuild();
  };

  const install = (loaded: readonly RetryPolicyEntry[]): void => {
    const next = new Map<string, RetryPolicyEntry>();
    for (const e of loaded) if (e.target !== undefined && e.policy !== undefined) next.set(keyOf(e), e);
    for (const [key, e] of touched) {
      const l = next.get(key);
      if (l === undefined || l.revision < e.revision) next.set(key, e);
    }
    held = next;
    rebuild();
  };

  const loadAll = async (): Promise<RetryPolicyEntry[]> => {
    const out: RetryPolicyEntry[] = [];
    let pageToken = "";
    do {
      const req = create(ManageRetriesRequestSchema, {
        requestId: randomUUID(),
        action: { case: "listPolicies", value: { pageSize: 1000, pageToken } },
      });
      const res = await opts.manageRetries(req, stopper.signal);
      if (res.result.case !== "listPolicies") {
        throw new Error(`ManageRetries answered ${res.result.case ?? "nothing"} to list_policies`);
      }
      out.push(...res.result.value.entries);
      pageToken = res.result.value.nextPageToken;
    } while (pageToken !== "");
    return out;
  };

  let settleFirst: () => void = () => undefined;
  const firstAttempt = new Promise<void>((resolve) => (settleFirst = resolve));
  let loading: Promise<void> | undefined;
  let again = false;
  // One load at a time; a reload asked for during a load (a reconnect) runs another one after it.
  const reload = (): Promise<void> => {
    if (loading !== undefined) {
      again = true;
      return loading;
    }
    loading = (async () => {
      let failures = 0;
      try {
        do {
          again = false;
          touched.clear();
          try {
            install(await loadAll());
            if (failures > 0) log.info("retry policies loaded", { policies: held.size, attempts: failures + 1 });
            failures = 0;
          } catch (err) {
            if (stopped) return;
            failures++;
            const fields = { attempt: failures, error: String(err) };
            // The System agent's server may simply not be up yet: say so once, then quietly retry.
            if (failures === 1) log.warn("retry policies not loaded yet; retrying", fields);
            else log.debug("retry policies not loaded yet; retrying", fields);
            settleFirst();
            again = true;
            await sleep(retryDelayMs(failures), stopper.signal).catch(() => undefined);
          }
          settleFirst();
        } while (again && !stopped);
      } finally {
        loading = undefined;
      }
    })();
    return loading;
  };

  const sub = bus.fanout(bus.eventSubject(RetryPolicyChangedEvent), (d) => {
    let event: RetryPolicyChanged;
    try {
      event = decodeEvent(RetryPolicyChangedEvent, d);
    } catch (err) {
      log.warn("undecodable retry policy change", { error: String(err) });
      return;
    }
    if (event.entry !== undefined) apply(event.entry);
  });
  // status() is a QueuedIterator: stop() ends it at once, whereas return() would wait for an event.
  const status = bus.nc.status() as AsyncIterable<{ type: string }> & { stop?: () => void };
  const watching = (async () => {
    for await (const s of status) {
      if (stopped) return;
      // Changes published while disconnected were missed.
      if (s.type === "reconnect") void reload();
    }
  })().catch((err: unknown) => log.warn("retry policies stopped watching the connection", { error: String(err) }));
  // Registered with the server before the load starts, so no change falls between the two.
  await bus.nc.flush();
  void reload();

  return {
    source: {
      skillRetry: (skillId) => skills.get(skillId),
      redelivery: (subject, deliveryCount) => {
        const p = resolvePolicy(list, { kind: RetryTargetKind.SUBJECT, name: subject })?.policy;
        return p === undefined ? undefined : redeliveryOf(p, deliveryCount, random);
      },
    },
    entries: () => [...list],
    firstAttempt,
    reload,
    async stop() {
      if (stopped) return;
      stopped = true;
      stopper.abort();
      sub.unsubscribe();
      status.stop?.();
      await watching;
      await loading;
    },
  };
}
