import { clearField, type DescMessage, fromJsonString, getOption } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { createValidator } from "@bufbuild/protovalidate";
import { describe, expect, it } from "vitest";
import { SkillCategory, skill as skillOption } from "../../gen/mesh/common/v1/skill_pb.ts";
import { file_mesh_registry_v1_registry_service } from "../../gen/mesh/registry/v1/registry_service_pb.ts";
import { file_mesh_research_v1_research_service } from "../../gen/mesh/research/v1/research_service_pb.ts";
import { defaultPlacement } from "../config/index.ts";
import { createCatalog, isIdempotent, procedureOf } from "./catalog.ts";

const catalog = createCatalog();
const validator = createValidator();

const prefixByCategory: ReadonlyMap<SkillCategory, string> = new Map([
  [SkillCategory.CONTENT, "content"],
  [SkillCategory.SEO, "seo"],
  [SkillCategory.CRM, "crm"],
  [SkillCategory.ANALYTICS, "analytics"],
  [SkillCategory.INTEGRATION, "integration"],
]);

/** Skills that change state: not declared free of side effects. */
const mutating = catalog.skills.filter((s) => s.method.idempotency !== MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS);

/** Every message reachable from `root` through message, list and map fields. */
function reachableMessages(root: DescMessage, seen = new Map<string, DescMessage>()): Map<string, DescMessage> {
  if (seen.has(root.typeName)) return seen;
  seen.set(root.typeName, root);
  for (const f of root.fields) {
    const sub =
      f.fieldKind === "message"
        ? f.message
        : (f.fieldKind === "list" && f.listKind === "message") || (f.fieldKind === "map" && f.mapKind === "message")
          ? f.message
          : undefined;
    if (sub !== undefined) reachableMessages(sub, seen);
  }
  return seen;
}

describe("createCatalog", () => {
  it("has the ten agents and 46 skills of the design", () => {
    expect(catalog.agents.map((a) => a.id)).toEqual([
      "crm",
      "data",
      "email",
      "optimization",
      "reporting",
      "research",
      "seo",
      "social",
      "system",
      "writing",
    ]);
    expect(catalog.skills).toHaveLength(46);
    expect(catalog.agents.reduce((n, a) => n + a.skills.length, 0)).toBe(46);
  });

  it("counts the skills per category as the design does", () => {
    const counts = new Map<SkillCategory, number>();
    for (const s of catalog.skills) counts.set(s.category, (counts.get(s.category) ?? 0) + 1);
    expect(Object.fromEntries(counts)).toEqual({
      [SkillCategory.CONTENT]: 12,
      [SkillCategory.SEO]: 8,
      [SkillCategory.CRM]: 10,
      [SkillCategory.ANALYTICS]: 8,
      [SkillCategory.INTEGRATION]: 8,
    });
  });

  it("gives every skill a unique id prefixed with its category", () => {
    const ids = catalog.skills.map((s) => s.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const s of catalog.skills) {
      const prefix = prefixByCategory.get(s.category);
      expect(prefix, `${s.id} has no known category`).toBeDefined();
      expect(s.id).toMatch(new RegExp(`^${prefix}\\.[a-z][a-z0-9]*(_[a-z0-9]+)*$`));
    }
  });

  it("indexes agents, skills and procedures", () => {
    expect(catalog.agentById.get("research")?.name).toBe("Research Agent");
    const kr = catalog.skillById.get("content.keyword_research");
    expect(kr?.agentId).toBe("research");
    expect(kr?.procedure).toBe("mesh.research.v1.ResearchService/KeywordResearch");
    expect(catalog.skillByProcedure.get("mesh.research.v1.ResearchService/KeywordResearch")).toBe(kr);
    for (const s of catalog.skills) {
      expect(s.procedure).toBe(procedureOf(s.method));
      expect(catalog.skillByProcedure.get(s.procedure)).toBe(s);
    }
  });

  it("places each agent on the server the config's default placement names", () => {
    expect(Object.keys(defaultPlacement).sort()).toEqual(catalog.agents.map((a) => a.id));
    for (const a of catalog.agents) expect(a.defaultServer, a.id).toBe(defaultPlacement[a.id]);
  });

  it("declares the skill option's idempotent flag consistently with idempotency_level", () => {
    for (const s of catalog.skills) {
      expect(getOption(s.method, skillOption).idempotent, s.id).toBe(isIdempotent(s.method));
      expect(s.idempotent, s.id).toBe(isIdempotent(s.method));
    }
  });

  it("has an example request for every skill that parses and passes validation", () => {
    for (const s of catalog.skills) {
      const msg = fromJsonString(s.method.input, s.example);
      const result = validator.validate(s.method.input, msg);
      expect(result.kind === "invalid" ? result.violations.map(String) : result.kind, s.id).toBe("valid");
    }
  });

  it("requires a request_id (field 1) on every mutating skill", () => {
    expect(mutating.length).toBeGreaterThan(0);
    for (const s of mutating) {
      const field = s.method.input.fields.find((f) => f.name === "request_id");
      expect(field?.number, `${s.id} request_id field number`).toBe(1);
      if (field === undefined) continue;
      const msg = fromJsonString(s.method.input, s.example);
      clearField(msg, field);
      const result = validator.validate(s.method.input, msg);
      expect(result.kind, s.id).toBe("invalid");
      const paths =
        result.kind === "invalid"
          ? result.violations.map((v) => v.field.map((p) => ("name" in p ? p.name : "")).join("."))
          : [];
      expect(paths, s.id).toContain("request_id");
    }
  });

  it("uses no dynamically typed messages (Struct, Value, ListValue, Any) in requests or responses", () => {
    const dynamic = new Set([
      "google.protobuf.Struct",
      "google.protobuf.Value",
      "google.protobuf.ListValue",
      "google.protobuf.Any",
    ]);
    const offenders: string[] = [];
    for (const s of catalog.skills) {
      for (const root of [s.method.input, s.method.output]) {
        for (const name of reachableMessages(root).keys()) if (dynamic.has(name)) offenders.push(`${s.id}: ${name}`);
      }
    }
    expect(offenders).toEqual([]);
  });

  it("skips services without the agent option and rejects duplicate skill ids", () => {
    // RegistryService is served by every server but is not an agent.
    const registryOnly = createCatalog([file_mesh_registry_v1_registry_service]);
    expect(registryOnly.agents).toEqual([]);
    expect(registryOnly.skills).toEqual([]);
    const research = file_mesh_research_v1_research_service;
    expect(() => createCatalog([research, research])).toThrow(/skill id content\.[a-z_]+ is declared twice/);
  });
});
