/**
 * The three servers as a new user runs them: standard tools (buf curl over reflection, a grpc-js
 * client built only from proto/), the registry, agent cards, authentication, authorisation,
 * validation, UNIMPLEMENTED skills, and one trace across a cross-server handoff.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fromJsonString } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { benchRequest } from "../bench/requests.ts";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.ts";
import { ServerReflection as ReflectionV1Alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.ts";
import { SkillCategory } from "../gen/mesh/common/v1/skill_pb.ts";
import { RegistryService } from "../gen/mesh/registry/v1/registry_service_pb.ts";
import { ResearchService } from "../gen/mesh/research/v1/research_service_pb.ts";
import { SeoService } from "../gen/mesh/seo/v1/seo_service_pb.ts";
import { WritingService } from "../gen/mesh/writing/v1/writing_service_pb.ts";
import { createCatalog } from "../lib/registry/index.ts";
import { buildProtoImage } from "../scripts/proto-image.ts";
import { expectCode } from "./support/expect.ts";
import { type Harness, root, startHarness } from "./support/harness.ts";
import { rankTrackingRequest } from "./support/requests.ts";

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ principals: { "seo-reader": ["seo.*"] } });
});
afterAll(async () => {
  await h?.close();
});

const { keywords } = benchRequest();

describe("standard tools", () => {
  it("every server reports SERVING on grpc.health.v1 overall and per service", async () => {
    for (const s of ["content", "operations", "technical"] as const) {
      const health = h.client(s, Health, null, "grpc");
      expect((await health.check({ service: "" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    }
    const tech = h.client("technical", Health, null);
    expect((await tech.check({ service: "mesh.seo.v1.SeoService" })).status).toBe(
      HealthCheckResponse_ServingStatus.SERVING,
    );
    await expectCode(tech.check({ service: "mesh.research.v1.ResearchService" }), Code.NotFound);
    const list = await tech.list({});
    expect(Object.keys(list.statuses)).toContain("mesh.data.v1.DataService");
  });

  it("buf curl lists services through reflection and ListSkills returns 46 skills by category", () => {
    const buf = join(root, "node_modules", ".bin", "buf");
    const services = execFileSync(
      buf,
      ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-services", h.urls.technical],
      {
        encoding: "utf8",
      },
    );
    expect(services.split("\n").filter(Boolean).sort()).toEqual([
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      "mesh.data.v1.DataService",
      "mesh.directory.v1.DirectoryService",
      "mesh.registry.v1.RegistryService",
      "mesh.reporting.v1.ReportingService",
      "mesh.seo.v1.SeoService",
      "mesh.system.v1.SystemService",
      "mesh.workflow.v1.WorkflowService",
    ]);
    const out = execFileSync(
      buf,
      [
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        `${h.urls.technical}/mesh.registry.v1.RegistryService/ListSkills`,
      ],
      { encoding: "utf8" },
    );
    const skills = (
      JSON.parse(out) as { skills: Array<{ id: string; category: string; agentId: string; server: string }> }
    ).skills;
    expect(skills).toHaveLength(46);
    const count = (c: string) => skills.filter((s) => s.category === c).length;
    expect([count("SKILL_CATEGORY_CONTENT"), count("SKILL_CATEGORY_SEO"), count("SKILL_CATEGORY_CRM")]).toEqual([
      12, 8, 10,
    ]);
    expect([count("SKILL_CATEGORY_ANALYTICS"), count("SKILL_CATEGORY_INTEGRATION")]).toEqual([8, 8]);
    expect(skills.find((s) => s.id === "content.keyword_research")).toMatchObject({
      agentId: "research",
      server: "content",
    });
    expect(skills.find((s) => s.id === "crm.follow_up_sequences")).toMatchObject({
      agentId: "email",
      server: "operations",
    });
    expect(skills.every((s) => s.agentId !== "" && s.server !== "")).toBe(true);
  });

  it("reflection v1alpha answers list_services and file_containing_symbol with the file and its imports", async () => {
    const reflection = h.client("content", ReflectionV1Alpha, null, "grpc");
    async function* requests() {
      yield { host: "", messageRequest: { case: "listServices" as const, value: "" } };
      yield {
        host: "",
        messageRequest: { case: "fileContainingSymbol" as const, value: "mesh.research.v1.ResearchService" },
      };
      yield { host: "", messageRequest: { case: "fileContainingSymbol" as const, value: "mesh.nope.Nothing" } };
    }
    const responses = [];
    for await (const r of reflection.serverReflectionInfo(requests())) responses.push(r);
    expect(responses).toHaveLength(3);
    const [list, file, missing] = responses;
    expect(list?.messageResponse.case).toBe("listServicesResponse");
    if (list?.messageResponse.case === "listServicesResponse") {
      expect(list.messageResponse.value.service.map((s) => s.name)).toContain("mesh.research.v1.ResearchService");
      expect(list.messageResponse.value.service.map((s) => s.name)).not.toContain("mesh.seo.v1.SeoService");
    }
    expect(file?.messageResponse.case).toBe("fileDescriptorResponse");
    if (file?.messageResponse.case === "fileDescriptorResponse") {
      // research_service.proto plus buf/validate, descriptor, timestamp, skill.proto, …
      expect(file.messageResponse.value.fileDescriptorProto.length).toBeGreaterThanOrEqual(4);
    }
    expect(missing?.messageResponse.case).toBe("errorResponse");
  });

  it("a @grpc/grpc-js client built only from the .proto files calls a skill", async () => {
    const image = buildProtoImage({ root, out: join(h.dataDir, "image.binpb") });
    const def = protoLoader.loadFileDescriptorSetFromBuffer(readFileSync(image), {
      longs: String,
      enums: String,
      defaults: true,
    });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      mesh: { research: { v1: { ResearchService: grpc.ServiceClientConstructor } } };
    };
    const client = new pkg.mesh.research.v1.ResearchService(
      h.urls.content.replace("http://", ""),
      grpc.credentials.createInsecure(),
    ) as unknown as Record<
      string,
      (req: unknown, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void
    >;
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${h.tokens.operator}`);
    const res = await new Promise<{ keywords: Array<{ keyword: string; rank: number; quick_win: boolean }> }>(
      (resolve, reject) =>
        (
          client.KeywordResearch as (
            req: unknown,
            md: grpc.Metadata,
            cb: (e: grpc.ServiceError | null, r: unknown) => void,
          ) => void
        )(
          {
            keywords: [
              {
                keyword: "assisted living austin",
                monthly_search_volume: "2400",
                difficulty: 38,
                cpc_micros: "4200000",
                current_position: 14,
              },
              { keyword: "memory care austin tx", monthly_search_volume: "880", difficulty: 25, cpc_micros: "5100000" },
            ],
          },
          md,
          (err, r) => (err ? reject(err) : resolve(r as never)),
        ),
    );
    (client as unknown as grpc.Client).close();
    expect(res.keywords.map((k) => k.keyword)).toEqual(["assisted living austin", "memory care austin tx"]);
    // Field names are the proto's own: a descriptor-set client keeps them as declared.
    expect(res.keywords[0]).toMatchObject({
      rank: 1,
      quick_win: true,
      monthly_search_volume: "2400",
      current_position: 14,
    });
  });

  it("serves A2A agent cards over HTTP/1.1, per server and per agent, with input and output schemas", async () => {
    const card = (await (await fetch(`${h.urls.content}/.well-known/agent-card.json`)).json()) as {
      skills: Array<{ id: string }>;
      supportedInterfaces: Array<{ url: string; protocolBinding: string }>;
      agents: Array<{ id: string; card: string }>;
    };
    expect(card.supportedInterfaces[0]).toEqual({
      url: h.urls.content,
      protocolBinding: "GRPC",
      protocolVersion: "1.0",
    });
    expect(card.skills.map((s) => s.id)).toContain("content.keyword_research");
    expect(card.agents.map((a) => a.id).sort()).toEqual(["optimization", "research", "writing"]);
    const research = (await (
      await fetch(`${h.urls.technical}/agents/research/.well-known/agent-card.json`)
    ).json()) as {
      name: string;
      supportedInterfaces: Array<{ url: string }>;
      skills: Array<{
        id: string;
        inputSchema: { $defs: Record<string, unknown> };
        outputSchema: object;
        examples: string[];
      }>;
    };
    expect(research.name).toBe("Research Agent");
    // The card points at wherever the agent is placed, whichever server serves it.
    expect(research.supportedInterfaces[0]?.url).toBe(h.urls.content);
    const kw = research.skills.find((s) => s.id === "content.keyword_research");
    expect(Object.keys(kw?.inputSchema.$defs ?? {})).toContain("mesh.research.v1.KeywordCandidate");
    expect(kw?.examples).toHaveLength(1);
    expect((await fetch(`${h.urls.content}/agents/nobody/.well-known/agent-card.json`)).status).toBe(404);
  });
});

describe("registry", () => {
  it("lists agents with placement and implemented counts, filters skills, and returns schemas", async () => {
    const registry = h.client("operations", RegistryService, null);
    const { agents } = await registry.listAgents({});
    expect(agents).toHaveLength(10);
    expect(agents.find((a) => a.id === "seo")).toMatchObject({
      server: "technical",
      url: h.urls.technical,
      skillCount: 8,
    });
    expect(agents.find((a) => a.id === "research")?.implementedSkillCount).toBe(3);
    expect((await registry.listAgents({ server: "operations" })).agents.map((a) => a.id).sort()).toEqual([
      "crm",
      "email",
      "social",
    ]);
    const crm = await registry.listSkills({ category: SkillCategory.CRM });
    expect(crm.skills).toHaveLength(10);
    expect((await registry.listSkills({ agentId: "seo" })).skills).toHaveLength(8);
    await expectCode(registry.listSkills({ agentId: "nobody" }), Code.NotFound);
    await expectCode(registry.listSkills({ agentId: "Bad Agent!" }), Code.InvalidArgument);
    const one = await registry.getSkill({ skill: "/mesh.seo.v1.SeoService/TrackRankings" });
    expect(one.skill).toMatchObject({ id: "seo.rank_tracking", implemented: true, idempotent: true });
    const schema = JSON.parse(one.requestJsonSchema) as {
      $defs: Record<string, { properties: Record<string, unknown> }>;
    };
    expect(Object.keys(schema.$defs["mesh.seo.v1.TrackRankingsRequest"]?.properties ?? {})).toContain("ourDomain");
    expect(one.fileDescriptorSet.length).toBeGreaterThan(1000);
  });
});

describe("security and errors", () => {
  it("refuses a skill call without a token, or with an unknown token, as UNAUTHENTICATED", async () => {
    const err = await expectCode(
      h.client("content", ResearchService, null).keywordResearch({ keywords }),
      Code.Unauthenticated,
    );
    expect(err.rawMessage).toMatch(/missing bearer token/);
    await expectCode(
      h
        .client("content", ResearchService, null)
        .keywordResearch({ keywords }, { headers: { authorization: "Bearer not-a-token" } }),
      Code.Unauthenticated,
    );
  });

  it("refuses a caller not granted a skill as PERMISSION_DENIED, naming the skill", async () => {
    const err = await expectCode(
      h.client("content", ResearchService, "seo-reader").keywordResearch({ keywords }),
      Code.PermissionDenied,
    );
    expect(err.rawMessage).toContain("content.keyword_research");
    // The same caller may call what it was granted.
    const res = await h.client("technical", SeoService, "seo-reader").trackRankings(rankTrackingRequest());
    expect(res.rankings[0]?.delta).toBe(5);
  });

  it("answers INVALID_ARGUMENT naming the field path, before any agent code runs", async () => {
    const research = h.client("content", ResearchService);
    const err = await expectCode(
      research.keywordResearch({ keywords: [{ keyword: "", monthlySearchVolume: 10n, difficulty: 101 }] }),
      Code.InvalidArgument,
    );
    expect(err.rawMessage).toMatch(/keywords\[0\]\.(keyword|difficulty)/);
    const both = await expectCode(
      research.keywordResearch({ keywords, csv: "keyword,volume,difficulty\nx,1,1" }),
      Code.InvalidArgument,
    );
    expect(both.rawMessage).toContain("exactly one");
    // A CSV problem found by the skill itself names row and column.
    const csv = await expectCode(
      research.keywordResearch({ csv: "keyword,volume,difficulty\nfoo,lots,3" }),
      Code.InvalidArgument,
    );
    expect(csv.rawMessage).toBe('csv[row 2].volume: "lots" is not a number between 0 and 1000000000000');
  });

  it("answers UNIMPLEMENTED naming the skill for skills not built yet", async () => {
    const skill = createCatalog().skillById.get("content.internal_linking");
    const example = fromJsonString(WritingService.method.planInternalLinks.input, skill?.example ?? "");
    const err = await expectCode(h.client("content", WritingService).planInternalLinks(example), Code.Unimplemented);
    expect(err.rawMessage).toContain("content.internal_linking");
  });
});

describe("cross-server handoff", () => {
  it("the technical server calls Research on the content server inside one trace, measured against the budget", async () => {
    const res = await h.client("technical", SeoService).trackRankings(rankTrackingRequest());
    expect(res.opportunities[0]).toMatchObject({ keyword: "assisted living austin", currentPosition: 9 });
    expect(res.visibility.find((v) => v.ours)?.domain).toBe("example.com");

    const spans = await h.otlp.waitFor(
      (all) =>
        all.some(
          (s) => s.service === "mesh-content" && s.name === "mesh.research.v1.ResearchService/KeywordResearch",
        ) && all.some((s) => s.service === "mesh-technical" && s.name === "mesh.seo.v1.SeoService/TrackRankings"),
    );
    const serverSeo = spans.find(
      (s) => s.service === "mesh-technical" && s.name === "mesh.seo.v1.SeoService/TrackRankings" && s.kind === 2,
    );
    const client = spans.find(
      (s) =>
        s.service === "mesh-technical" && s.name === "mesh.research.v1.ResearchService/KeywordResearch" && s.kind === 3,
    );
    const serverResearch = spans.find(
      (s) =>
        s.service === "mesh-content" &&
        s.name === "mesh.research.v1.ResearchService/KeywordResearch" &&
        s.traceId === client?.traceId,
    );
    expect(serverSeo).toBeDefined();
    expect(client).toBeDefined();
    expect(serverResearch).toBeDefined();
    expect(client?.traceId).toBe(serverSeo?.traceId);
    expect(client?.parentSpanId).toBe(serverSeo?.spanId);
    expect(serverResearch?.parentSpanId).toBe(client?.spanId);
    expect(client?.attributes).toMatchObject({
      "rpc.system": "connect_rpc",
      "rpc.service": "mesh.research.v1.ResearchService",
      "rpc.method": "KeywordResearch",
      "mesh.handoff": true,
      "mesh.handoff.from": "technical",
      "mesh.handoff.to": "content",
      "mesh.handoff.budget_ms": 200,
      "mesh.skill.id": "content.keyword_research",
    });
    // The verdict agrees with the measured duration (how fast it was is the benchmark's business).
    const duration = client?.attributes["mesh.handoff.duration_ms"];
    expect(typeof duration).toBe("number");
    expect(client?.attributes["mesh.handoff.within_budget"]).toBe((duration as number) <= 200);
    expect(serverResearch?.attributes).toMatchObject({
      "mesh.server": "content",
      "mesh.skill.id": "content.keyword_research",
    });
  });
});
