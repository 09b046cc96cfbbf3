/**
 * The smoke run: the reference workflow end to end against running servers — start a
 * keyword_opportunity run, approve its brief, and wait until it succeeds. Used by `mesh smoke` and
 * by the tests that start the mesh on embedded PostgreSQL and NATS.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import {
  KeywordOpportunityInputSchema,
  type Run,
  RunState,
  RunStateSchema,
  StepState,
  type WorkflowService,
} from "../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { stateName, terminalRunStates } from "../lib/workflow/index.ts";

/** Runs the smoke workflow; resolves with the finished run or throws saying where it stopped. */
export async function runSmoke(
  client: Client<typeof WorkflowService>,
  opts: { timeoutMs?: number; log?: (line: string) => void } = {},
): Promise<Run> {
  const log = opts.log ?? (() => {});
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  const input = create(KeywordOpportunityInputSchema, {
    keyword: "assisted living austin",
    siteDomain: "example.com",
    city: "Austin",
    region: "TX",
    monthlyVolume: 2400n,
    difficulty: 38,
    currentPosition: 14,
    approvers: ["smoke-test"],
  });
  const started = await client.startRun({
    requestId: randomUUID(),
    workflow: "keyword_opportunity",
    input: anyPack(KeywordOpportunityInputSchema, input),
  });
  const runId = started.run?.id ?? "";
  log(`started run ${runId} (trace ${started.run?.traceId})`);
  let approved = false;
  for (;;) {
    const run = (await client.getRun({ runId })).run;
    if (run === undefined) throw new Error(`run ${runId} vanished`);
    const gate = run.steps.find((s) => s.state === StepState.WAITING_APPROVAL);
    if (gate && !approved) {
      await client.approveStep({ requestId: randomUUID(), runId, step: gate.name, approver: "smoke-test" });
      approved = true;
      log(`approved ${gate.name}`);
    }
    if (terminalRunStates.has(run.state)) {
      const state = stateName(RunStateSchema, run.state);
      if (run.state !== RunState.SUCCEEDED) throw new Error(`run ${runId} ended ${state}: ${run.error}`);
      log(`run ${runId} ${state}: ${run.steps.map((s) => s.name).join(" → ")}`);
      return run;
    }
    if (Date.now() > deadline) throw new Error(`run ${runId} did not finish in time (state ${run.state})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
