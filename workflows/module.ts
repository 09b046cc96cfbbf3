/**
 * The workflow engine as a module of the mesh: placed with the System agent (the technical server
 * by default), it owns the workflow tables in that schema, runs the built-in workflow definitions
 * plus those named in MESH_WORKFLOWS, and serves WorkflowService.
 */
import type { EntitySchema } from "@mikro-orm/postgresql";
import { WorkflowService } from "../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { defineModule } from "../lib/server/index.ts";
import { createEngine, createWorkflowService, workflowEntities, workflowMigrations } from "../lib/workflow/index.ts";
import { loadWorkflows } from "./index.ts";

/** The workflow engine module. */
export const workflowModule = defineModule({
  id: "workflow",
  placedWith: "system",
  data: { entities: workflowEntities as readonly EntitySchema[], migrations: workflowMigrations },
  async start(deps) {
    const workflows = await loadWorkflows(deps.config.workflowModules);
    const engine = createEngine({
      db: deps.db,
      bus: deps.bus,
      client: deps.client,
      workflows,
      log: deps.log,
      tickMs: deps.config.workflowTickMs,
      ackWaitMs: deps.config.workflowAckWaitMs,
    });
    await engine.start();
    return {
      services: [{ service: WorkflowService, impl: createWorkflowService(engine, deps.bus), idempotent: true }],
      // Run inputs and step outputs travel in google.protobuf.Any: a deployment's own workflows bring
      // their own input types, and a wait step's output is an event, whose file no service imports.
      typeFiles: workflows.flatMap((w) => [
        w.input.file,
        ...w.steps.flatMap((s) =>
          s.kind === "skill" ? [s.method.output.file] : s.kind === "wait" ? [s.event.schema.file] : [],
        ),
      ]),
      stop: () => engine.stop(),
    };
  },
});
