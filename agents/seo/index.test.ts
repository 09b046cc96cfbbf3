import { describe, expect, it } from "vitest";
import type { AgentDeps } from "../../lib/server/index.ts";
import { seoAgent } from "./index.ts";

describe("seoAgent", () => {
  it("stops its Lighthouse runner (and so Chromium) with the server", async () => {
    // create() only builds closures over these; nothing is called before stop().
    const deps = { config: {}, db: {} } as unknown as AgentDeps;
    await seoAgent.create(deps);
    const running = (await seoAgent.background?.(deps)) ?? [];
    expect(running).toHaveLength(1);
    await expect(running[0]?.stop()).resolves.toBeUndefined();
  });
});
