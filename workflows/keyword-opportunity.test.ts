import { describe, expect, it } from "vitest";
import { shortestRetryWindowMs } from "../lib/workflow/index.ts";
import { builtinWorkflows } from "./index.ts";

/** About 12 s for a restarted server to report SERVING, plus a caller's breaker half-open delay (5 s). */
const serverRestartMs = 17_000;

describe("built-in workflows", () => {
  it.each(builtinWorkflows.map((w) => [w.name, w] as const))(
    "%s: every skill step keeps retrying through a restart of its agent's server, with margin",
    (_name, workflow) => {
      const skills = workflow.steps.filter((s) => s.kind === "skill");
      expect(skills.length).toBeGreaterThan(0);
      for (const s of skills) {
        expect(shortestRetryWindowMs(s.retry), s.name).toBeGreaterThanOrEqual(2 * serverRestartMs);
      }
    },
  );
});
