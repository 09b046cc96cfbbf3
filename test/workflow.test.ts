/**
 * The workflow engine end to end on three real server processes, the real PostgreSQL and NATS:
 * runs across the servers, kill -9 of the technical server mid-run, rollback through compensations,
 * approval gates with escalation, one trace per run, and bad input.
 */
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeywordResearchRequestSchema } from "../gen/mesh/research/v1/research_service_pb.ts";
import {
  KeywordOpportunityInputSchema,
  type Run,
  RunState,
  StepState,
  WorkflowService,
} from "../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { eventually } from "./support/backbone.ts";
import { expectCode } from "./support/expect.ts";
import { type Harness, root, startHarness } from "./support/harness.ts";

const input = (over: Partial<{ keyword: string; approvers: string[] }> = {}) =>
  anyPack(
    KeywordOpportunityInputSchema,
    create(KeywordOpportunityInputSchema, {
      keyword: over.keyword ?? "assisted living austin",
      siteDomain: "example.com",
      approvers: over.approvers ?? ["lead"],
    }),
  );

describe("workflow engine", () => {
  let h: Harness;
  let db: pg.Client;
  const wf = () => h.client("technical", WorkflowService);

  beforeAll(async () => {
    h = await startHarness({
      env: {
        MESH_WORKFLOWS: join(root, "test", "support", "workflows.ts"),
        MESH_WORKFLOW_ACK_WAIT_MS: "3000",
        MESH_WORKFLOW_TICK_MS: "100",
      },
    });
    db = new pg.Client({ connectionString: h.databaseUrl });
    await db.connect();
  }, 90_000);
  afterAll(async () => {
    await db?.end();
    await h?.close();
  });

  const start = async (workflow: string, over: Parameters<typeof input>[0] = {}): Promise<Run> => {
    const res = await wf().startRun({ requestId: randomUUID(), workflow, input: input(over) });
    if (!res.run) throw new Error("no run");
    return res.run;
  };
  const until = async (runId: string, done: (r: Run) => boolean, timeoutMs = 30_000): Promise<Run> => {
    let last: Run | undefined;
    try {
      return await eventually(async () => {
        last = (await wf().getRun({ runId })).run;
        return last && done(last) ? last : undefined;
      }, timeoutMs);
    } catch (err) {
      const steps = last?.steps.map((s) => `${s.name}=${s.state}#${s.attempt} ${s.error}`).join("; ");
      throw new Error(`${String(err)}; run state ${last?.state} (${last?.error}): ${steps}`);
    }
  };
  const step = (r: Run, name: string) => r.steps.find((s) => s.name === name);
  const count = async (sql: string, params: unknown[]): Promise<number> =>
    Number((await db.query<{ n: string }>(sql, params)).rows[0]?.n);

  it("survives kill -9 of the technical server mid-run: each step runs once, in one trace", async () => {
    const run = await start("test_three_servers");
    // Kill the orchestrator while the first steps are queued or executing.
    await h.stop("technical", "SIGKILL");
    await h.start("technical");
    const waiting = await until(run.id, (r) => r.state === RunState.WAITING);
    expect(step(waiting, "sign_off")?.state).toBe(StepState.WAITING_APPROVAL);
    // Kill it again while the run waits at the gate; the wait is persisted. (Spans still buffered in a
    // process killed with -9 are lost, as with any batching exporter; give the exporter its 0.5 s
    // so the trace can be checked whole below.)
    await new Promise((r) => setTimeout(r, 1500));
    await h.stop("technical", "SIGKILL");
    await h.start("technical");
    await wf().approveStep({ requestId: randomUUID(), runId: run.id, step: "sign_off", approver: "lead" });
    const done = await until(run.id, (r) => r.state === RunState.SUCCEEDED);
    expect(done.steps.map((s) => [s.name, s.state])).toEqual([
      ["research", StepState.SUCCEEDED],
      ["record", StepState.SUCCEEDED],
      ["rankings", StepState.SUCCEEDED],
      ["sign_off", StepState.SUCCEEDED],
      ["record_done", StepState.SUCCEEDED],
    ]);

    // Exactly once as each agent saw it: one stored execution per step key on its server's schema
    // (a repeated call is answered from it), and one interaction per CRM step.
    for (const [schema, name] of [
      ["content", "research"],
      ["operations", "record"],
      ["technical", "rankings"],
      ["operations", "record_done"],
    ] as const) {
      const key = step(done, name)?.idempotencyKey;
      expect(key).toBeTruthy();
      expect(
        await count(`select count(*) as n from "${schema}".idempotency_record where id like $1`, [`%:${key}`]),
        `${name} on ${schema}`,
      ).toBe(1);
    }
    expect(
      await count(`select count(*) as n from operations.crm_interaction where event_id like $1`, [`${run.id}-%`]),
    ).toBe(2);

    // One trace: the skill calls on all three servers, before and after the restarts.
    const spans = await h.otlp.waitFor(
      (all) =>
        ["mesh-content", "mesh-operations", "mesh-technical"].every((svc) =>
          all.some((s) => s.traceId === done.traceId && s.service === svc && s.kind === 2),
        ) && all.some((s) => s.traceId === done.traceId && s.name === "workflow.step record_done"),
      20_000,
    );
    const inTrace = spans.filter((s) => s.traceId === done.traceId);
    for (const name of ["research", "record", "rankings", "record_done"]) {
      expect(inTrace.some((s) => s.name === `workflow.step ${name}`)).toBe(true);
    }
    expect(inTrace.some((s) => s.name.startsWith("process ") && s.attributes["messaging.system"] === "nats")).toBe(
      true,
    );
  }, 120_000);

  it("survives kill -9 of an agent's server mid-run: the step is retried until it is back, and runs once", async () => {
    const run = await start("test_three_servers");
    await h.stop("operations", "SIGKILL");
    await new Promise((r) => setTimeout(r, 300));
    await h.start("operations");
    await until(run.id, (r) => r.state === RunState.WAITING);
    await wf().approveStep({ requestId: randomUUID(), runId: run.id, step: "sign_off", approver: "lead" });
    const done = await until(run.id, (r) => r.state === RunState.SUCCEEDED);
    for (const name of ["record", "record_done"]) {
      const key = step(done, name)?.idempotencyKey;
      expect(
        await count(`select count(*) as n from operations.idempotency_record where id like $1`, [`%:${key}`]),
      ).toBe(1);
    }
    expect(
      await count(`select count(*) as n from operations.crm_interaction where event_id like $1`, [`${run.id}-%`]),
    ).toBe(2);
  }, 90_000);

  it("rolls back completed steps in reverse order when a step fails for good", async () => {
    const run = await start("test_doomed");
    const done = await until(run.id, (r) => r.state === RunState.ROLLED_BACK);
    expect(step(done, "third")?.state).toBe(StepState.FAILED);
    expect(step(done, "third")?.attempt).toBe(1); // not retryable: no second attempt
    expect(step(done, "second")?.state).toBe(StepState.COMPENSATED);
    expect(step(done, "first")?.state).toBe(StepState.COMPENSATED);
    expect(done.error).toMatch(/step third failed/);
    const undo = await db.query<{ event_id: string }>(
      `select event_id from operations.crm_interaction where event_id like $1 order by recorded_at, event_id`,
      [`${run.id}-undo-%`],
    );
    expect(undo.rows.map((r) => r.event_id)).toEqual([`${run.id}-undo-second`, `${run.id}-undo-first`]);
  }, 60_000);

  it("pauses at an approval gate until ApproveStep, refusing others and steps not waiting", async () => {
    const run = await start("test_gated", { approvers: ["lead"] });
    const waiting = await until(run.id, (r) => step(r, "approve")?.state === StepState.WAITING_APPROVAL);
    expect(step(waiting, "record")?.state).toBe(StepState.PENDING);
    await expectCode(
      wf().approveStep({ requestId: randomUUID(), runId: run.id, step: "approve", approver: "intern" }),
      Code.PermissionDenied,
      /intern/,
    );
    await expectCode(
      wf().approveStep({ requestId: randomUUID(), runId: run.id, step: "research", approver: "lead" }),
      Code.FailedPrecondition,
      /not waiting for approval/,
    );
    await expectCode(
      wf().approveStep({ requestId: randomUUID(), runId: run.id, step: "nope", approver: "lead" }),
      Code.NotFound,
      /nope/,
    );
    const approved = await wf().approveStep({
      requestId: randomUUID(),
      runId: run.id,
      step: "approve",
      approver: "lead",
      comment: "ship it",
    });
    expect(step(approved.run as Run, "approve")?.approval?.decidedBy).toBe("lead");
    await until(run.id, (r) => r.state === RunState.SUCCEEDED);
  }, 60_000);

  it("escalates an approval on timeout, then fails and rolls back when the escalation times out too", async () => {
    const run = await start("test_gated", { approvers: ["lead"] });
    const escalated = await until(run.id, (r) => step(r, "approve")?.approval?.escalationLevel === 1);
    expect(step(escalated, "approve")?.approval?.approvers).toEqual(["boss"]);
    await expectCode(
      wf().approveStep({ requestId: randomUUID(), runId: run.id, step: "approve", approver: "lead" }),
      Code.PermissionDenied,
    );
    const failed = await until(run.id, (r) => r.state === RunState.ROLLED_BACK);
    expect(step(failed, "approve")?.state).toBe(StepState.FAILED);
    expect(step(failed, "approve")?.error).toMatch(/timed out/);
    expect(step(failed, "record")?.state).toBe(StepState.SKIPPED);
  }, 60_000);

  it("streams a run's progress with WatchRun until it ends", async () => {
    const run = await start("test_gated", { approvers: ["lead"] });
    const seen: Run[] = [];
    const watching = (async () => {
      for await (const m of wf().watchRun({ runId: run.id })) if (m.run) seen.push(m.run);
    })();
    await until(run.id, (r) => step(r, "approve")?.state === StepState.WAITING_APPROVAL);
    await wf().approveStep({ requestId: randomUUID(), runId: run.id, step: "approve", approver: "lead" });
    await watching;
    expect(seen[0]?.id).toBe(run.id);
    expect(seen.at(-1)?.state).toBe(RunState.SUCCEEDED);
    expect(seen.some((r) => step(r, "approve")?.state === StepState.WAITING_APPROVAL)).toBe(true);
  }, 60_000);

  it("refuses bad input precisely and persists nothing", async () => {
    const runs = () => count(`select count(*) as n from technical.workflow_run`, []);
    const before = await runs();
    await expectCode(
      wf().startRun({ requestId: randomUUID(), workflow: "no_such_flow", input: input() }),
      Code.NotFound,
      /no_such_flow/,
    );
    await expectCode(
      wf().startRun({ requestId: randomUUID(), workflow: "test_gated", input: input({ keyword: "" }) }),
      Code.InvalidArgument,
      /input\.keyword/,
    );
    await expectCode(
      wf().startRun({
        requestId: randomUUID(),
        workflow: "test_gated",
        input: anyPack(KeywordResearchRequestSchema, create(KeywordResearchRequestSchema, {})),
      }),
      Code.InvalidArgument,
      /input: must be a mesh\.workflow\.v1\.KeywordOpportunityInput/,
    );
    await expectCode(
      wf().startRun({ requestId: "not-a-uuid", workflow: "test_gated", input: input() }),
      Code.InvalidArgument,
      /request_id/,
    );
    expect(await runs()).toBe(before);

    const requestId = randomUUID();
    const first = await wf().startRun({ requestId, workflow: "test_gated", input: input() });
    const again = await wf().startRun({ requestId, workflow: "test_gated", input: input() });
    expect(again.run?.id).toBe(first.run?.id);
    await expectCode(
      wf().startRun({ requestId, workflow: "test_gated", input: input({ keyword: "memory care" }) }),
      Code.AlreadyExists,
      /request_id/,
    );
    expect(await runs()).toBe(before + 1);
    await wf().cancelRun({ requestId: randomUUID(), runId: first.run?.id ?? "", reason: "test over" });
    await until(first.run?.id ?? "", (r) => r.state === RunState.CANCELLED);
  }, 60_000);

  it("lists runs newest first with filters and pages", async () => {
    const page1 = await wf().listRuns({ workflow: "test_gated", pageSize: 2 });
    expect(page1.runs.length).toBe(2);
    expect(page1.nextPageToken).not.toBe("");
    const page2 = await wf().listRuns({ workflow: "test_gated", pageSize: 2, pageToken: page1.nextPageToken });
    const ids = [...page1.runs, ...page2.runs].map((r) => r.id);
    expect(new Set(ids).size).toBe(ids.length);
    const created = [...page1.runs, ...page2.runs].map((r) => Number(r.createdAt?.seconds));
    expect([...created].sort((a, b) => b - a)).toEqual(created);
    const cancelled = await wf().listRuns({ states: [RunState.CANCELLED] });
    expect(cancelled.runs.every((r) => r.state === RunState.CANCELLED)).toBe(true);
    await expectCode(wf().listRuns({ pageToken: "garbage!" }), Code.InvalidArgument, /page_token/);
  });
});
