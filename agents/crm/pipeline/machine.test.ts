import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  type AttributeValue,
  AttributeValueSchema,
  ComparisonOperator,
  type PipelineDefinition,
  PipelineDefinitionSchema,
  type StageGuard,
  StageGuardSchema,
  StageOutcome,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { FailedPreconditionError, InvalidInputError } from "../../../lib/errors/index.ts";
import { compareValue, foldText } from "./compare.ts";
import { checkPipeline, seniorLivingPipeline } from "./definition.ts";
import { decideMove, transitionsFrom } from "./machine.ts";

const now = new Date("2025-01-15T12:00:00Z");
const str = (value: string): AttributeValue => create(AttributeValueSchema, { kind: { case: "stringValue", value } });
const num = (value: number): AttributeValue => create(AttributeValueSchema, { kind: { case: "numberValue", value } });
const guard = (id: string): StageGuard =>
  create(StageGuardSchema, { id, description: "", check: { case: "minLeadScore", value: 1 } });

/** A pipeline a → b → c(won), * → x(lost), where a has two ways out tried in order. */
function pipeline(): PipelineDefinition {
  return create(PipelineDefinitionSchema, {
    id: "test",
    stages: [
      { id: "a", outcome: StageOutcome.OPEN },
      { id: "b", outcome: StageOutcome.OPEN },
      { id: "c", outcome: StageOutcome.WON },
      { id: "x", outcome: StageOutcome.LOST },
    ],
    transitions: [
      { fromStage: "a", toStage: "c", guards: [guard("g1"), guard("g2")] },
      { fromStage: "a", toStage: "b", guards: [guard("g3")] },
      { fromStage: "b", toStage: "c" },
      { fromStage: "*", toStage: "x" },
    ],
  });
}

describe("pipeline state machine", () => {
  it("applies `*` to every open stage but not to closed ones or into itself", () => {
    const def = pipeline();
    expect(transitionsFrom(def, "a").map((t) => t.toStage)).toEqual(["c", "b", "x"]);
    expect(transitionsFrom(def, "b").map((t) => t.toStage)).toEqual(["c", "x"]);
    expect(transitionsFrom(def, "c")).toEqual([]);
    expect(transitionsFrom(def, "x")).toEqual([]);
  });

  it("in auto mode takes the first transition whose guards all pass, stopping a transition at its first failing guard", async () => {
    const seen: string[] = [];
    const pass = new Set(["g1", "g3"]);
    const d = await decideMove(pipeline(), "a", { kind: "auto" }, async (g, to) => {
      seen.push(`${to}:${g.id}`);
      return { passed: pass.has(g.id), reason: pass.has(g.id) ? "ok" : "no" };
    });
    expect(seen).toEqual(["c:g1", "c:g2", "b:g3"]);
    expect(d.taken?.toStage).toBe("b");
    expect(d.guards.map((g) => [g.guardId, g.toStage, g.passed])).toEqual([
      ["g1", "c", true],
      ["g2", "c", false],
      ["g3", "b", true],
    ]);
  });

  it("in auto mode takes nothing when every candidate has a failing guard, except a guard-free one", async () => {
    const none = async () => ({ passed: false, reason: "no" });
    const d = await decideMove(pipeline(), "a", { kind: "auto" }, none);
    // `* → x` has no guards, so auto mode ends there: transitions are tried in listed order.
    expect(d.taken?.toStage).toBe("x");
    const closed = await decideMove(pipeline(), "c", { kind: "auto" }, none);
    expect(closed.taken).toBeUndefined();
  });

  it("moves to a named target only through a listed transition", async () => {
    const yes = async () => ({ passed: true, reason: "ok" });
    expect((await decideMove(pipeline(), "b", { kind: "stage", stage: "c" }, yes)).taken?.toStage).toBe("c");
    const err = await decideMove(pipeline(), "b", { kind: "stage", stage: "a" }, yes).catch((e) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect(err.message).toContain('from "b" to "a"');
    const closed = await decideMove(pipeline(), "c", { kind: "stage", stage: "x" }, yes).catch((e) => e);
    expect(closed).toBeInstanceOf(FailedPreconditionError);
    expect(closed.message).toContain('from "c" to "x"');
    const unknown = await decideMove(pipeline(), "a", { kind: "stage", stage: "zz" }, yes).catch((e) => e);
    expect(unknown).toBeInstanceOf(InvalidInputError);
    expect(unknown.field).toBe("target_stage");
  });

  it("rejects definitions protovalidate cannot catch, naming the field", () => {
    expect(() => checkPipeline(seniorLivingPipeline, "pipeline")).not.toThrow();
    const repeated = pipeline();
    repeated.transitions.push(create(PipelineDefinitionSchema, pipeline()).transitions[2] as never);
    expect(() => checkPipeline(repeated, "pipeline")).toThrow(/pipeline\.transitions\[4\]: repeats the transition b→c/);
    const scored = pipeline();
    scored.transitions[2]?.guards.push(
      create(StageGuardSchema, {
        id: "converted",
        check: { case: "contactCondition", value: { node: { case: "conversion", value: { minCount: 1 } } } },
      }),
    );
    expect(() => checkPipeline(scored, "pipeline")).toThrow(
      /pipeline\.transitions\[2\]\.guards\[\d+\]\.contact_condition\.conversion: is evaluated by segmentation only/,
    );
    const self = pipeline();
    (self.transitions[2] as { toStage: string }).toStage = "b";
    expect(() => checkPipeline(self, "pipeline")).toThrow(/pipeline\.transitions\[2\]\.to_stage/);
    const closedOnly = pipeline();
    for (const s of closedOnly.stages) s.outcome = StageOutcome.LOST;
    expect(() => checkPipeline(closedOnly, "pipeline")).toThrow(/pipeline\.stages: needs at least one open stage/);
    const dupGuard = pipeline();
    (dupGuard.transitions[0] as { guards: StageGuard[] }).guards = [guard("g1"), guard("g1")];
    expect(() => checkPipeline(dupGuard, "pipeline")).toThrow(/pipeline\.transitions\[0\]\.guards\[1\]\.id/);
  });
});

describe("typed comparisons", () => {
  const cmp = (v: Parameters<typeof compareValue>[0], op: ComparisonOperator, ...vals: AttributeValue[]) =>
    compareValue(v, op, vals, { now }).passed;

  it("folds case and accents of text unless asked not to", () => {
    expect(foldText("Zoë ÉLAN")).toBe("zoe elan");
    expect(cmp("Zoë", ComparisonOperator.EQUALS, str("zoe"))).toBe(true);
    expect(compareValue("Zoë", ComparisonOperator.EQUALS, [str("zoe")], { now, caseSensitive: true }).passed).toBe(
      false,
    );
    expect(cmp("Assisted Living", ComparisonOperator.STARTS_WITH, str("assisted"))).toBe(true);
    expect(cmp("Assisted Living", ComparisonOperator.NOT_CONTAINS, str("memory"))).toBe(true);
  });

  it("compares numbers and times by value, BETWEEN inclusive, WITHIN_LAST anchored at now", () => {
    expect(cmp(4500, ComparisonOperator.BETWEEN, num(4500), num(6000))).toBe(true);
    expect(cmp(4499.99, ComparisonOperator.BETWEEN, num(4500), num(6000))).toBe(false);
    expect(cmp(10, ComparisonOperator.GREATER_THAN, str("9"))).toBe(true);
    const week = create(AttributeValueSchema, { kind: { case: "durationValue", value: { seconds: 604800n } } });
    expect(cmp(new Date("2025-01-10T00:00:00Z"), ComparisonOperator.WITHIN_LAST, week)).toBe(true);
    expect(cmp(new Date("2025-01-01T00:00:00Z"), ComparisonOperator.WITHIN_LAST, week)).toBe(false);
  });

  it("treats an unset value as failing every positive comparison and passing their negations", () => {
    expect(cmp(undefined, ComparisonOperator.EQUALS, str("x"))).toBe(false);
    expect(cmp(undefined, ComparisonOperator.NOT_EQUALS, str("x"))).toBe(true);
    expect(cmp("", ComparisonOperator.IS_SET)).toBe(false);
    expect(cmp("", ComparisonOperator.IS_NOT_SET)).toBe(true);
  });

  it("fails with a reason, not an exception, when an operand does not fit the value's type", () => {
    const r = compareValue(12, ComparisonOperator.GREATER_THAN, [str("lots")], { now });
    expect(r.passed).toBe(false);
    expect(r.reason).toContain('operand "lots" is not a number');
  });
});
