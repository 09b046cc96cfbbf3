/**
 * Workflow runs end to end on the three real servers (real PostgreSQL and NATS, isolated database
 * and prefix): a three-step run — Research on the content server, then CRM on the operations
 * server and SEO on the technical server in parallel — timed from StartRun until WatchRun reports
 * SUCCEEDED, one run at a time and 8 at once. Every step commits its output and queues the next
 * through the outbox and JetStream, so this measures the engine's per-step overhead on top of the
 * skill calls themselves.
 */
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import {
  KeywordOpportunityInputSchema,
  RunState,
  WorkflowService,
} from "../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { root, startHarness } from "../test/support/harness.ts";
import { type LatencyResult, measure } from "./lib.ts";

/** Options of {@link benchWorkflow}. */
export interface WorkflowBenchOptions {
  /** Runs per scenario. */
  runs: number;
}

/** Runs the scenarios; results in ms per run. */
export async function benchWorkflow(opts: WorkflowBenchOptions): Promise<LatencyResult[]> {
  const h = await startHarness({
    env: {
      MESH_WORKFLOWS: join(root, "test", "support", "workflows.ts"),
      MESH_LOG_LEVEL: "warn",
      MESH_RATE_LIMIT_RPS: "10000000",
      MESH_RATE_LIMIT_BURST: "10000000",
      MESH_WORKFLOW_TICK_MS: "1000",
    },
  });
  try {
    const wf = h.client("technical", WorkflowService);
    const input = anyPack(
      KeywordOpportunityInputSchema,
      create(KeywordOpportunityInputSchema, { keyword: "assisted living austin", siteDomain: "example.com" }),
    );
    const oneRun = async (): Promise<void> => {
      const started = await wf.startRun({ requestId: randomUUID(), workflow: "test_pipeline", input });
      const runId = started.run?.id ?? "";
      for await (const m of wf.watchRun({ runId })) {
        const state = m.run?.state;
        if (state === RunState.SUCCEEDED) return;
        if (state === RunState.ROLLED_BACK || state === RunState.FAILED)
          throw new Error(`run ${runId}: ${m.run?.error}`);
      }
      throw new Error(`run ${runId} stream ended early`);
    };
    const results: LatencyResult[] = [];
    for (const concurrency of [1, 8]) {
      results.push(
        await measure("workflow run: 3 steps on 3 servers", oneRun, {
          calls: opts.runs,
          concurrency,
          warmup: Math.min(20, opts.runs),
        }),
      );
    }
    return results;
  } finally {
    await h.close();
  }
}
