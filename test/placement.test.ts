/** Placement is configuration: one process can host all ten agents. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RegistryService } from "../gen/mesh/registry/v1/registry_service_pb.ts";
import { ResearchService } from "../gen/mesh/research/v1/research_service_pb.ts";
import { SeoService } from "../gen/mesh/seo/v1/seo_service_pb.ts";
import { defaultPlacement } from "../lib/config/index.ts";
import { type Harness, startHarness } from "./support/harness.ts";
import { rankTrackingRequest } from "./support/requests.ts";

let h: Harness;

beforeAll(async () => {
  const placement = Object.keys(defaultPlacement)
    .map((a) => `${a}=technical`)
    .join(",");
  h = await startHarness({ servers: ["technical"], env: { MESH_PLACEMENT: placement } });
});
afterAll(async () => {
  await h?.close();
});

describe("all agents in one process", () => {
  it("hosts every agent and still routes agent-to-agent calls through the typed client", async () => {
    const { agents } = await h.client("technical", RegistryService, null).listAgents({});
    expect(agents.map((a) => a.server)).toEqual(Array(10).fill("technical"));
    const research = await h.client("technical", ResearchService).keywordResearch({
      keywords: [{ keyword: "assisted living austin", monthlySearchVolume: 2400n, difficulty: 38 }],
    });
    expect(research.keywords).toHaveLength(1);
    const res = await h.client("technical", SeoService).trackRankings(rankTrackingRequest());
    expect(res.opportunities[0]?.keyword).toBe("assisted living austin");
    const spans = await h.otlp.waitFor((all) =>
      all.some((s) => s.kind === 3 && s.attributes["mesh.handoff.to"] === "technical"),
    );
    expect(spans.find((s) => s.kind === 3)?.attributes["mesh.handoff.from"]).toBe("technical");
  });
});
