import { describe, expect, it } from "vitest";
import { ConditionGroupSchema, ConditionSchema } from "../../gen/mesh/crm/v1/crm_service_pb.ts";
import { KeywordResearchRequestSchema } from "../../gen/mesh/research/v1/research_service_pb.ts";
import { TrackRankingsRequestSchema } from "../../gen/mesh/seo/v1/seo_service_pb.ts";
import { type JsonSchema, messageJsonSchema } from "./json-schema.ts";

/** The `$defs` entry of `typeName`; fails the test when it is missing. */
function def(schema: JsonSchema, typeName: string): JsonSchema {
  const defs = schema.$defs as Record<string, JsonSchema>;
  const found = defs[typeName];
  if (found === undefined) throw new Error(`no $defs entry ${typeName}; have ${Object.keys(defs).join(", ")}`);
  return found;
}

function prop(object: JsonSchema, name: string): JsonSchema {
  const found = (object.properties as Record<string, JsonSchema>)[name];
  if (found === undefined) throw new Error(`no property ${name}`);
  return found;
}

/** Every `$ref` value anywhere in `value`. */
function refs(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const v of value) refs(v, out);
  else if (typeof value === "object" && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      if (k === "$ref" && typeof v === "string") out.push(v);
      else refs(v, out);
    }
  }
  return out;
}

describe("messageJsonSchema", () => {
  const schema = messageJsonSchema(KeywordResearchRequestSchema);
  const request = def(schema, "mesh.research.v1.KeywordResearchRequest");
  const candidate = def(schema, "mesh.research.v1.KeywordCandidate");

  it("is a draft 2020-12 schema referring to the root message's definition", () => {
    expect(schema.$schema).toBe("https://json-schema.org/draft/2020-12/schema");
    expect(schema.$id).toBe("urn:proto:mesh.research.v1.KeywordResearchRequest");
    expect(schema.$ref).toBe("#/$defs/mesh.research.v1.KeywordResearchRequest");
    expect(request.type).toBe("object");
    expect(request.additionalProperties).toBe(false);
  });

  it("uses JSON names and carries repeated rules onto the array", () => {
    const keywords = prop(request, "keywords");
    expect(keywords.type).toBe("array");
    expect(keywords.maxItems).toBe(50000);
    expect(keywords.items).toEqual({ $ref: "#/$defs/mesh.research.v1.KeywordCandidate" });
    const seeds = prop(request, "seedTerms");
    expect(seeds).toMatchObject({
      type: "array",
      maxItems: 100,
      items: { type: "string", minLength: 1, maxLength: 100 },
    });
    expect(Object.keys(request.properties as object)).toContain("minSearchVolume");
    expect(Object.keys(request.properties as object)).not.toContain("min_search_volume");
  });

  it("carries string, number and pattern rules", () => {
    expect(prop(candidate, "keyword")).toEqual({ type: "string", minLength: 1, maxLength: 200 });
    const difficulty = prop(candidate, "difficulty");
    expect(difficulty.minimum).toBe(0);
    expect(difficulty.maximum).toBe(100);
    expect(prop(candidate, "currentPosition")).toMatchObject({ type: "integer", minimum: 0, maximum: 100 });
    expect(prop(request, "currencyCode")).toEqual({ type: "string", pattern: "^([A-Z]{3})?$" });
  });

  it("accepts int64 values as strings or integers", () => {
    const volume = prop(candidate, "monthlySearchVolume");
    expect(volume.type).toEqual(["string", "integer"]);
    expect(volume.pattern).toBe("^-?[0-9]+$");
    expect(volume.minimum).toBe(0);
    expect(prop(candidate, "cpcMicros").type).toEqual(["string", "integer"]);
  });

  it("lists CEL rules under x-protovalidate-cel", () => {
    expect(request["x-protovalidate-cel"]).toEqual([
      {
        id: "keyword_research.source",
        message: "give keyword rows in keywords or a csv, exactly one of them",
        expression: "(size(this.keywords) > 0) != (size(this.csv) > 0)",
      },
    ]);
    expect(candidate["x-protovalidate-cel"]).toBeUndefined();
  });

  it("terminates on recursive messages and defines each once", () => {
    // Condition → ConditionGroup → repeated Condition.
    const tree = messageJsonSchema(ConditionSchema);
    const condition = def(tree, "mesh.crm.v1.Condition");
    const group = def(tree, "mesh.crm.v1.ConditionGroup");
    expect(prop(condition, "group")).toEqual({ $ref: "#/$defs/mesh.crm.v1.ConditionGroup" });
    expect(prop(group, "conditions")).toMatchObject({
      type: "array",
      minItems: 1,
      maxItems: 100,
      items: { $ref: "#/$defs/mesh.crm.v1.Condition" },
    });
    expect(condition["x-oneof"]).toEqual({ node: ["group", "field", "behaviour", "score", "conversion"] });
    // Starting from the other end of the cycle gives the same definitions.
    const fromGroup = messageJsonSchema(ConditionGroupSchema);
    expect(Object.keys(fromGroup.$defs as object).sort()).toEqual(Object.keys(tree.$defs as object).sort());
  });

  it("only refers to definitions it contains", () => {
    for (const s of [schema, messageJsonSchema(ConditionSchema), messageJsonSchema(TrackRankingsRequestSchema)]) {
      const defs = s.$defs as Record<string, JsonSchema>;
      for (const r of refs(s)) expect(Object.keys(defs).map((k) => `#/$defs/${k}`)).toContain(r);
    }
  });

  it("maps Timestamp to a date-time string and lists required fields", () => {
    const track = def(messageJsonSchema(TrackRankingsRequestSchema), "mesh.seo.v1.TrackRankingsRequest");
    expect(prop(track, "previousDate")).toEqual({ type: "string", format: "date-time" });
    expect(prop(track, "currentDate")).toEqual({ type: "string", format: "date-time" });
    expect(track.required).toEqual(["ourDomain", "previousDate", "currentDate"]);
    expect(prop(track, "ourDomain")).toEqual({ type: "string", format: "hostname", maxLength: 253 });
    expect(prop(track, "competitorDomains")).toMatchObject({
      type: "array",
      maxItems: 20,
      uniqueItems: true,
      items: { type: "string", format: "hostname" },
    });
    expect((track["x-protovalidate-cel"] as Array<{ id: string }>).map((c) => c.id)).toEqual([
      "track_rankings.dates",
      "track_rankings.competitors",
    ]);
  });

  it("describes enums by name or number and flags a forbidden zero value", () => {
    const group = def(messageJsonSchema(ConditionGroupSchema), "mesh.crm.v1.ConditionGroup");
    const op = prop(group, "booleanOperator");
    expect(op.anyOf).toEqual([
      {
        type: "string",
        enum: ["BOOLEAN_OPERATOR_UNSPECIFIED", "BOOLEAN_OPERATOR_AND", "BOOLEAN_OPERATOR_OR", "BOOLEAN_OPERATOR_NOT"],
      },
      { type: "integer" },
    ]);
    expect(op["x-not-unspecified"]).toBe(true);
  });
});
