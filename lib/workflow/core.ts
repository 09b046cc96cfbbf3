/**
 * What the parts of the workflow engine share: the engine's dependencies in one small object,
 * passed to each part's factory (see engine.ts for how they fit together).
 */
import type { InferEntity } from "@mikro-orm/core";
import type { Bus } from "../bus/index.ts";
import type { Database } from "../db/index.ts";
import type { Logger } from "../log/index.ts";
import type { MeshClient } from "../transport/index.ts";
import type { WorkflowDefinition } from "./define.ts";
import type { WorkflowRun, WorkflowStep } from "./entities.ts";

/** A loaded `workflow_run` row. */
export type RunRow = InferEntity<typeof WorkflowRun>;
/** A loaded `workflow_step` row. */
export type StepRow = InferEntity<typeof WorkflowStep>;

/** The engine's name on the task queue (`<prefix>.tasks.workflow.<level>`) and as a worker. */
export const ENGINE = "workflow";

/** The dependencies every part of the engine works with. */
export interface EngineCore {
  /** The technical database. */
  readonly db: Database;
  readonly bus: Bus;
  /** Calls skills on any agent. */
  readonly client: MeshClient;
  readonly log: Logger;
  /** The clock. */
  readonly now: () => Date;
  /** Workflow definitions by name. */
  readonly definitions: ReadonlyMap<string, WorkflowDefinition>;
}
