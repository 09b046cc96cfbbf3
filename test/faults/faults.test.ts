/**
 * The fault suite: workflow runs crossing the three servers keep running while faults are injected
 * — kill -9 of each server, a NATS and a PostgreSQL restart (private servers started here), a hung
 * peer (SIGSTOP/SIGCONT) and a network partition of one server (a network namespace whose link is
 * cut) — and a numbered sequence of events is published on the bus throughout. Afterwards every run
 * must have reached the terminal state its workflow leads to, no acknowledged run or event may be
 * missing, and no step may have been applied twice. Recovery times are recorded, not asserted, in
 * test-results/faults.json.
 *
 * MESH_FAULTS=full runs every fault with more runs; otherwise (CI) a subset: one kill -9 and one
 * NATS restart with a few runs.
 */
import { randomUUID } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  KeywordOpportunityInputSchema,
  type Run,
  RunState,
  WorkflowService,
} from "../../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { type Bus, connectBus, type Running } from "../../lib/bus/index.ts";
import type { ServerName } from "../../lib/config/index.ts";
import { createDatabase } from "../../lib/db/index.ts";
import { createLogger } from "../../lib/log/index.ts";
import { root } from "../support/harness.ts";
import {
  backingUnavailable,
  type PrivateNats,
  type PrivatePostgres,
  startPrivateNats,
  startPrivatePostgres,
} from "./backing.ts";
import { type Cluster, startCluster } from "./cluster.ts";
import { createNamespace, type Namespace, netnsUnavailable } from "./netns.ts";

const full = process.env.MESH_FAULTS === "full";
const mode = full ? "full" : "fast";
const unavailable = backingUnavailable();
if (unavailable !== undefined) console.warn(`fault suite skipped: ${unavailable}`);
/** Times the full plan is repeated (MESH_FAULTS_ROUNDS, full mode; more samples for the percentiles). */
const rounds = full ? Math.max(1, Math.min(10, Number(process.env.MESH_FAULTS_ROUNDS ?? 1) || 1)) : 1;
/** Each run must be terminal this long after the last fault healed. */
const settleMs = full ? 240_000 : 120_000;
/** Runs started before each fault is injected (plus those started while it lasts, and a probe run). */
const warmRuns = full ? 6 : 3;
/** Gap between two run starts during a fault. */
const runGapMs = full ? 400 : 700;
/** The server run inside a network namespace for the partition (full mode, as root). */
const partitioned: ServerName = "content";

/** A fault: what it does, how long it lasts, how it ends. */
interface Fault {
  kind: "kill-9" | "nats-restart" | "postgres-restart" | "sigstop" | "partition";
  target: string;
  /** The server the fault takes away, if it targets one. */
  server?: ServerName;
  /** Starts the fault. */
  inject(): Promise<void>;
  /** How long the fault lasts before `heal`. */
  holdMs: number;
  /** Ends the fault (restart, SIGCONT, link up). */
  heal(): Promise<void>;
}

/** What the suite records of each injected fault. */
interface FaultResult {
  kind: string;
  target: string;
  /** From the fault's end (restart, SIGCONT, link up) until a run started then succeeded. */
  recoveryMs: number;
  /** From the fault's end until all three servers reported SERVING. */
  healthMs: number;
  /** Unfinished runs when the fault began. */
  runsInFlightAtInjection: number;
  /** Runs the load started from just before the fault until it healed. */
  runsStarted: number;
  /** For a fault targeting a server: true when its health check failed while the fault lasted. */
  targetDown?: boolean;
}

/** A run the suite started (its StartRun was answered). */
interface Tracked {
  id: string;
  workflow: string;
  expected: RunState;
  final?: Run;
}

const input = (keyword: string) =>
  anyPack(
    KeywordOpportunityInputSchema,
    create(KeywordOpportunityInputSchema, { keyword, siteDomain: "example.com", approvers: ["lead"] }),
  );

/** The name of a run state (RunState is a const object here, not a TypeScript enum). */
const stateName = (state: RunState | undefined): string =>
  Object.entries(RunState).find(([, v]) => v === state)?.[0] ?? String(state);

/** States a run never leaves. */
const terminalStates: ReadonlySet<RunState> = new Set<RunState>([
  RunState.SUCCEEDED,
  RunState.ROLLED_BACK,
  RunState.FAILED,
  RunState.CANCELLED,
]);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}

describe.skipIf(unavailable !== undefined)(`fault injection (${mode})`, () => {
  let ns: Namespace | undefined;
  let netnsSkipped: string | undefined;
  let nats: PrivateNats;
  let postgres: PrivatePostgres;
  let cluster: Cluster;
  let pool: pg.Pool;
  let bus: Bus;
  const began = Date.now();

  beforeAll(async () => {
    if (full) {
      netnsSkipped = await netnsUnavailable();
      if (netnsSkipped === undefined) ns = await createNamespace();
    }
    const host = ns?.hostAddress ?? "127.0.0.1";
    postgres = await startPrivatePostgres(ns ? `127.0.0.1,${host}` : "127.0.0.1", ns ? [host, ns.nsAddress] : []);
    nats = await startPrivateNats(host);
    const databaseUrl = (await createDatabase(postgres.adminUrl, "mesh")).replace("127.0.0.1", host);
    pool = new pg.Pool({ connectionString: databaseUrl, max: 4, connectionTimeoutMillis: 5000 });
    pool.on("error", () => undefined);
    cluster = await startCluster({
      host,
      databaseUrl,
      natsUrl: nats.url,
      ...(ns ? { isolated: { server: partitioned, exec: ns.exec, address: ns.nsAddress } } : {}),
      env: {
        MESH_WORKFLOWS: join(root, "test", "support", "workflows.ts"),
        MESH_WORKFLOW_ACK_WAIT_MS: "3000",
        MESH_WORKFLOW_TICK_MS: "100",
      },
    });
    bus = await connectBus({ url: nats.url, prefix: "fev", name: "faults-suite", log: createLogger("error") });
  }, 180_000);

  afterAll(async () => {
    await bus?.nc.close().catch(() => undefined);
    await cluster?.close();
    await pool?.end().catch(() => undefined);
    await nats?.close();
    await postgres?.close();
    await ns?.close();
  }, 60_000);

  it("every run ends as its workflow says, no acknowledged event is lost, no step is applied twice", async () => {
    const wf = () => cluster.client("technical", WorkflowService);
    const runs: Tracked[] = [];
    const results: FaultResult[] = [];
    /** StartRun calls never answered within their 120 s, however often retried. */
    const startFailures: string[] = [];

    /** Starts a run, retrying StartRun with the same request id until it is answered (or 120 s pass). */
    const startRun = async (workflow: "test_pipeline" | "test_doomed"): Promise<Tracked | undefined> => {
      const requestId = randomUUID();
      const end = Date.now() + 120_000;
      for (;;) {
        try {
          const res = await wf().startRun({ requestId, workflow, input: input(`fault ${requestId.slice(0, 8)}`) });
          if (!res.run) throw new Error("StartRun answered no run");
          const t: Tracked = {
            id: res.run.id,
            workflow,
            expected: workflow === "test_doomed" ? RunState.ROLLED_BACK : RunState.SUCCEEDED,
          };
          runs.push(t);
          return t;
        } catch (err) {
          const code = ConnectError.from(err).code;
          if (code === Code.InvalidArgument || code === Code.NotFound || Date.now() > end) throw err;
          await sleep(250);
        }
      }
    };
    const getRun = async (id: string): Promise<Run | undefined | "missing"> => {
      try {
        return (await wf().getRun({ runId: id }, { timeoutMs: 5000 })).run;
      } catch (err) {
        return ConnectError.from(err).code === Code.NotFound ? "missing" : undefined;
      }
    };
    const terminal = (r: Run) => terminalStates.has(r.state);

    // The event check: a numbered sequence published throughout. A live durable consumer takes it
    // as it comes (through every fault, as the servers' consumers do); a second durable, declared
    // now and read only at the end, finds every acknowledged event still in the stream after all
    // the faults (a live consumer alone would have taken most of them before NATS went down).
    const subject = "fev.events.faults.seq";
    const acked = new Set<number>();
    const consumed = new Set<number>();
    const backlog = new Set<number>();
    let deliveries = 0;
    let publishing = true;
    const live = { stream: "events", durable: "faults_live", filter: subject, ackWaitMs: 5000 } as const;
    const later = { stream: "events", durable: "faults_backlog", filter: subject, ackWaitMs: 30_000 } as const;
    await bus.ensureConsumer(later);
    const consumer: Running = await bus.consume(live, async (d) => {
      deliveries++;
      consumed.add(Number(new TextDecoder().decode(d.data)));
    });
    const publisher = (async () => {
      for (let seq = 1; publishing; seq++) {
        // Publish until acknowledged (same message id: the stream deduplicates a retry whose
        // first attempt was stored), or give up on this number when the suite stops publishing.
        while (publishing) {
          try {
            await bus.publish(subject, new TextEncoder().encode(String(seq)), { msgId: `seq-${seq}` });
            acked.add(seq);
            break;
          } catch {
            await sleep(200);
          }
        }
        await sleep(100);
      }
    })();

    /** Starts runs at a steady pace until `stop()`; one in five rolls back by design. */
    const load = () => {
      let on = true;
      let started = 0;
      const pending: Promise<unknown>[] = [];
      const loop = (async () => {
        for (let i = 0; on; i++) {
          pending.push(
            startRun(i % 5 === 4 ? "test_doomed" : "test_pipeline").then(
              () => started++,
              (err: unknown) => startFailures.push(String(err)),
            ),
          );
          await sleep(runGapMs);
        }
      })();
      return {
        started: () => started,
        async stop() {
          on = false;
          await loop;
          await Promise.all(pending);
          return started;
        },
      };
    };

    /** Waits until every server answers SERVING. */
    const allServing = async (timeoutMs = 120_000) => {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const ok = await Promise.all((["content", "operations", "technical"] as const).map((s) => cluster.serving(s)));
        if (ok.every(Boolean)) return;
        if (Date.now() > end) throw new Error("servers not SERVING after the fault");
        await sleep(100);
      }
    };

    /** Waits until run `id` is terminal. */
    const awaitTerminal = async (id: string, timeoutMs: number): Promise<Run | undefined> => {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const r = await getRun(id);
        if (r !== undefined && r !== "missing" && terminal(r)) return r;
        if (Date.now() > end) return undefined;
        await sleep(200);
      }
    };

    /** Runs the engine has not finished (running, waiting or rolling back), from the database. */
    const inFlight = async (): Promise<number> =>
      Number(
        (
          await pool.query<{ n: string }>(
            "select count(*) as n from technical.workflow_run where state not in ($1, $2, $3, $4)",
            [RunState.SUCCEEDED, RunState.ROLLED_BACK, RunState.FAILED, RunState.CANCELLED],
          )
        ).rows[0]?.n ?? 0,
      );

    const injectFault = async (f: Fault): Promise<void> => {
      // Inject once runs are in flight (the load keeps starting more while the fault lasts).
      const l = load();
      const warmEnd = Date.now() + 15_000;
      let running = 0;
      while (Date.now() < warmEnd) {
        running = await inFlight();
        if (l.started() >= warmRuns && running > 0) break;
        await sleep(50);
      }
      await f.inject();
      // The fault took: a server it targets does not answer SERVING while it lasts.
      const holdEnd = Date.now() + f.holdMs;
      const down = f.server === undefined ? undefined : !(await cluster.serving(f.server, 1000));
      while (Date.now() < holdEnd) await sleep(100);
      const healStarted = Date.now();
      await f.heal();
      const stopped = l.stop();
      // Recovery: from the fault's end until a run started then has succeeded; health, measured
      // alongside: until all three servers answer SERVING.
      const health = allServing().then(() => Date.now() - healStarted);
      const probe = await startRun("test_pipeline");
      const done = probe ? await awaitTerminal(probe.id, 180_000) : undefined;
      const recoveryMs = Date.now() - healStarted;
      const healthMs = await health;
      const started = await stopped;
      results.push({
        kind: f.kind,
        target: f.target,
        recoveryMs,
        healthMs,
        runsInFlightAtInjection: running,
        runsStarted: started,
        ...(down === undefined ? {} : { targetDown: down }),
      });
      console.log(
        `fault ${f.kind} ${f.target}: recovery ${recoveryMs} ms (probe ${done ? stateName(done.state) : "not done"}), health ${healthMs} ms, ${running} runs in flight at injection, ${started} started during`,
      );
    };

    const kill9 = (server: ServerName): Fault => ({
      kind: "kill-9",
      target: server,
      server,
      inject: () => cluster.signal(server, "SIGKILL"),
      holdMs: 500,
      heal: () => cluster.start(server),
    });
    const natsRestart: Fault = {
      kind: "nats-restart",
      target: "nats",
      inject: () => nats.kill(),
      holdMs: 2000,
      heal: () => nats.start(),
    };
    const pgRestart = (how: "fast" | "immediate"): Fault => ({
      kind: "postgres-restart",
      target: `postgres (${how} stop)`,
      inject: () => postgres.stop(how),
      holdMs: 2000,
      heal: () => postgres.start(),
    });
    const hang = (server: ServerName): Fault => ({
      kind: "sigstop",
      target: server,
      server,
      inject: () => cluster.signal(server, "SIGSTOP"),
      holdMs: 20_000,
      heal: () => cluster.signal(server, "SIGCONT"),
    });
    const partition = (n: Namespace): Fault => ({
      kind: "partition",
      target: partitioned,
      server: partitioned,
      inject: () => n.cut(),
      holdMs: 15_000,
      heal: () => n.restore(),
    });

    const round: Fault[] = full
      ? [
          kill9("content"),
          kill9("operations"),
          kill9("technical"),
          natsRestart,
          pgRestart("immediate"),
          pgRestart("fast"),
          hang("operations"),
          ...(ns ? [partition(ns)] : []),
        ]
      : [kill9("technical"), natsRestart];
    const plan = Array.from({ length: rounds }, () => round).flat();
    if (full && ns === undefined) console.warn(`partition skipped: ${netnsSkipped}`);

    let report: Record<string, unknown> = {};
    try {
      for (const f of plan) await injectFault(f);

      // Every acknowledged run reaches a terminal state within the bound.
      const end = Date.now() + settleMs;
      for (const t of runs) {
        const r = await awaitTerminal(t.id, Math.max(1000, end - Date.now()));
        if (r !== undefined) t.final = r;
      }
      const lost: string[] = [];
      const stuck: string[] = [];
      for (const t of runs) {
        if (t.final !== undefined) continue;
        if ((await getRun(t.id)) === "missing") lost.push(t.id);
        else stuck.push(t.id);
      }
      // Runs in the database the suite never heard of (committed, but the answer to StartRun was lost) too.
      const open = await pool.query<{ id: string; state: number }>(
        "select id, state from technical.workflow_run where state not in ($1, $2, $3, $4) limit 100",
        [RunState.SUCCEEDED, RunState.ROLLED_BACK, RunState.FAILED, RunState.CANCELLED],
      );
      for (const row of open.rows) if (!stuck.includes(row.id)) stuck.push(row.id);

      // Every acknowledged event is consumed, by the live consumer and from the backlog.
      publishing = false;
      await publisher;
      // A stream or consumer gone with the store is a loss to report, not an error of the suite.
      const reading = await bus
        .consume(later, async (d) => {
          backlog.add(Number(new TextDecoder().decode(d.data)));
        })
        .catch((err: unknown) => {
          console.error(`reading the backlog failed: ${String(err)}`);
          return undefined;
        });
      const eventsEnd = Date.now() + 60_000;
      const missing = () => [...acked].filter((s) => !consumed.has(s) || !backlog.has(s));
      while (missing().length > 0 && Date.now() < eventsEnd) await sleep(200);
      await reading?.stop();
      const eventsLost = missing();

      // No step applied twice. Each application of a skill step commits its stored result (keyed by
      // the step's idempotency key) with the skill's writes, so there must be exactly one stored
      // result per step key on the step's server, and exactly one CRM interaction per recording step
      // (its event id names the run and the step) — a second application under another key would
      // show as a second row or as a failed run.
      let duplicates = 0;
      const duplicateDetails: string[] = [];
      const count = async (sql: string, params: unknown[]) =>
        Number((await pool.query<{ n: string }>(sql, params)).rows[0]?.n ?? 0);
      const expectOne = async (what: string, n: number) => {
        if (n === 1) return;
        duplicates += Math.max(0, n - 1);
        duplicateDetails.push(`${what}: ${n} applications`);
      };
      const stepsOf: Record<string, [schema: string, step: string][]> = {
        test_pipeline: [
          ["content", "research"],
          ["operations", "record"],
          ["technical", "rankings"],
        ],
        test_doomed: [
          ["operations", "first"],
          ["technical", "second"],
        ],
      };
      const interactionsOf: Record<string, string[]> = {
        test_pipeline: ["pipeline"],
        test_doomed: ["first", "undo-second", "undo-first"],
      };
      for (const t of runs) {
        if (t.final === undefined || t.final.state !== t.expected) continue;
        for (const [schema, name] of stepsOf[t.workflow] ?? []) {
          const key = t.final.steps.find((s) => s.name === name)?.idempotencyKey;
          const n = await count(`select count(*) as n from "${schema}".idempotency_record where id like $1`, [
            `%:${key}`,
          ]);
          await expectOne(`${t.workflow} ${t.id} step ${name}`, n);
        }
        for (const what of interactionsOf[t.workflow] ?? []) {
          const n = await count("select count(*) as n from operations.crm_interaction where event_id = $1", [
            `${t.id}-${what}`,
          ]);
          await expectOne(`${t.workflow} ${t.id} interaction ${what}`, n);
        }
      }
      // Repeated calls the agents answered from a stored result instead of applying them again.
      let replays = 0;
      for (const schema of ["content", "operations", "technical"]) {
        replays += await count(`select coalesce(sum(replays), 0) as n from "${schema}".idempotency_record`, []);
      }

      const wrong = runs
        .filter((t) => t.final !== undefined && t.final.state !== t.expected)
        .map((t) => `${t.workflow} ${t.id}: ${stateName(t.final?.state)} (${t.final?.error})`);
      const recoveries = results.map((r) => r.recoveryMs);
      report = {
        faults: results,
        faultsInjected: results.length,
        runs: runs.length,
        runsSucceeded: runs.filter((t) => t.final?.state === RunState.SUCCEEDED).length,
        runsRolledBack: runs.filter((t) => t.final?.state === RunState.ROLLED_BACK).length,
        runsFailed: runs.filter((t) => t.final?.state === RunState.FAILED).length,
        runsUnexpected: wrong.length,
        runsLost: lost.length,
        runsNotStarted: startFailures.length,
        runsStuck: stuck.length,
        events: acked.size,
        eventDeliveries: deliveries,
        eventRedeliveries: deliveries - consumed.size,
        eventsLost: eventsLost.length,
        duplicates,
        stepReplays: replays,
        recoveryP50Ms: percentile(recoveries, 50),
        recoveryP99Ms: percentile(recoveries, 99),
        mode,
        partition: ns ? "network namespace" : full ? `skipped: ${netnsSkipped}` : "not in fast mode",
        durationMs: Date.now() - began,
      };
      expect(wrong, "runs that ended in another state than their workflow leads to").toEqual([]);
      expect(lost, "runs lost").toEqual([]);
      expect(startFailures, "StartRun never answered").toEqual([]);
      expect(stuck, "runs not terminal").toEqual([]);
      expect(eventsLost, "acknowledged events never consumed").toEqual([]);
      expect(duplicateDetails, "steps applied more than once").toEqual([]);
      expect(results.length).toBe(plan.length);
      expect(
        results.filter((r) => r.targetDown === false).map((r) => `${r.kind} ${r.target}`),
        "faults whose target still answered SERVING",
      ).toEqual([]);
    } finally {
      publishing = false;
      await publisher;
      await consumer.stop();
      if (Object.keys(report).length === 0) {
        report = { faults: results, faultsInjected: results.length, runs: runs.length, mode, incomplete: true };
      }
      mkdirSync(join(root, "test-results", "faults-logs"), { recursive: true });
      writeFileSync(join(root, "test-results", "faults.json"), `${JSON.stringify(report, null, 2)}\n`);
      // The servers' own output (warnings and errors), for a failure's post-mortem.
      for (const [server, log] of Object.entries(cluster.logs)) {
        writeFileSync(join(root, "test-results", "faults-logs", `${server}.log`), log.slice(-2_000_000));
      }
      console.log(
        report.incomplete
          ? `faults ${mode}: incomplete after ${results.length} faults and ${runs.length} runs`
          : `faults ${mode}: ${report.faultsInjected} faults, ${report.runs} runs (${report.runsSucceeded} succeeded, ${report.runsRolledBack} rolled back, ${report.runsLost} lost, ${report.runsStuck} stuck), ${report.events} events (${report.eventsLost} lost), ${report.duplicates} duplicates, recovery p50 ${report.recoveryP50Ms} ms p99 ${report.recoveryP99Ms} ms`,
      );
    }
  }, 1_800_000);
});
