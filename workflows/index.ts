/**
 * Workflow definitions the technical server runs: the built-in ones, plus any modules named in
 * MESH_WORKFLOWS (comma-separated paths, each exporting definitions made with defineWorkflow) — the
 * extension point for a deployment's own workflows.
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { WorkflowDefinition } from "../lib/workflow/index.ts";
import { keywordOpportunity } from "./keyword-opportunity.ts";

/** Built-in workflows. */
export const builtinWorkflows: readonly WorkflowDefinition[] = [keywordOpportunity as unknown as WorkflowDefinition];

function isDefinition(v: unknown): v is WorkflowDefinition {
  const d = v as Partial<WorkflowDefinition> | null;
  return (
    typeof d === "object" && d !== null && typeof d.name === "string" && Array.isArray(d.steps) && d.input !== undefined
  );
}

/** Built-in workflows plus those exported by the modules in `paths`. */
export async function loadWorkflows(paths: readonly string[]): Promise<WorkflowDefinition[]> {
  const out = [...builtinWorkflows];
  for (const p of paths) {
    const mod = (await import(pathToFileURL(resolve(p)).href)) as Record<string, unknown>;
    const defs = Object.values(mod).filter(isDefinition);
    if (defs.length === 0) throw new Error(`MESH_WORKFLOWS: ${p} exports no workflow definitions`);
    out.push(...defs);
  }
  const names = new Set<string>();
  for (const d of out) {
    if (names.has(d.name)) throw new Error(`workflow ${d.name} is defined twice`);
    names.add(d.name);
  }
  return out;
}
