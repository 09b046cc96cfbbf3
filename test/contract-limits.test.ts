/**
 * Every field a request can carry is bounded by its contract (issue 12: one request of a few MB
 * must not take a server down): lists and maps have a maximum size, strings and bytes a maximum
 * length — for every RPC, including the ones added later. And the limits are no lower than what
 * real users send inline.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { type DescField, type DescFile, type DescMessage, getOption, hasOption } from "@bufbuild/protobuf";
import { type FieldRules, field as fieldRules } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { describe, expect, it } from "vitest";

const genRoot = join(import.meta.dirname, "..", "gen", "mesh");

async function meshFiles(): Promise<DescFile[]> {
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith("_pb.ts") ? [join(dir, e.name)] : [],
    );
  const files: DescFile[] = [];
  for (const path of walk(genRoot)) {
    for (const [name, value] of Object.entries(await import(path))) {
      if (name.startsWith("file_")) files.push(value as DescFile);
    }
  }
  return files;
}

/** Whether an RE2 pattern bounds the length of what it matches (anchored, no unbounded repetition). */
function boundedPattern(pattern: string): boolean {
  const outsideClasses = pattern.replace(/\\./g, "e").replace(/\[[^\]]*\]/g, "c");
  return outsideClasses.startsWith("^") && outsideClasses.endsWith("$") && !/[*+]|\{\d+,\}/.test(outsideClasses);
}

/**
 * Fields bounded elsewhere than in their own rules: a workflow's input travels in an Any and is
 * validated against its own type's rules when the engine unpacks it.
 */
const boundedElsewhere = new Set(["mesh.workflow.v1.StartRunRequest.input"]);

type ScalarRules = FieldRules["type"];

/** What is wrong with the length bound of a string or bytes value's rules, or undefined. */
function unboundedText(rules: ScalarRules | undefined, bytes: boolean): string | undefined {
  if (bytes) {
    if (rules?.case === "bytes" && (rules.value.maxLen || rules.value.len || rules.value.const?.length))
      return undefined;
    return "bytes without max_len";
  }
  if (rules?.case !== "string") return "string without max_len";
  const s = rules.value;
  if (s.maxLen || s.len || s.const || s.in.length > 0) return undefined;
  if (s.wellKnown.case === "uuid" || s.wellKnown.case === "tuuid") return undefined;
  if (s.pattern && boundedPattern(s.pattern)) return undefined;
  return "string without max_len";
}

function rulesOf(f: DescField): FieldRules | undefined {
  return hasOption(f, fieldRules) ? getOption(f, fieldRules) : undefined;
}

/** Every unbounded field reachable from `root`, as `path: problem`. */
function unbounded(root: DescMessage): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const visit = (m: DescMessage, path: string): void => {
    if (seen.has(m.typeName)) return;
    seen.add(m.typeName);
    for (const f of m.fields) {
      const at = `${path}.${f.name}`;
      const rules = rulesOf(f)?.type;
      const scalarType = f.fieldKind === "scalar" || f.fieldKind === "list" ? f.scalar : undefined;
      if (f.fieldKind === "list") {
        const r = rules?.case === "repeated" ? rules.value : undefined;
        if (!r?.maxItems) out.push(`${at}: repeated without max_items`);
        if (scalarType === 9 || scalarType === 12) {
          const problem = unboundedText(r?.items?.type, scalarType === 12);
          if (problem) out.push(`${at}[]: ${problem}`);
        }
      } else if (f.fieldKind === "map") {
        const r = rules?.case === "map" ? rules.value : undefined;
        if (!r?.maxPairs) out.push(`${at}: map without max_pairs`);
        if (f.mapKey === 9) {
          const problem = unboundedText(r?.keys?.type, false);
          if (problem) out.push(`${at}{key}: ${problem}`);
        }
        if (f.mapKind === "scalar" && (f.scalar === 9 || f.scalar === 12)) {
          const problem = unboundedText(r?.values?.type, f.scalar === 12);
          if (problem) out.push(`${at}{value}: ${problem}`);
        }
      } else if (scalarType === 9 || scalarType === 12) {
        const problem = unboundedText(rules, scalarType === 12);
        if (problem) out.push(`${at}: ${problem}`);
      }
      const child = f.message;
      if (child === undefined) continue;
      if (child.typeName.startsWith("google.protobuf.")) {
        // Timestamp, Duration and the wrappers are fixed-size; Struct, Value, ListValue and Any
        // carry whatever they are given.
        if (/^google\.protobuf\.(Struct|Value|ListValue|Any)$/.test(child.typeName) && !boundedElsewhere.has(at)) {
          out.push(`${at}: ${child.typeName} is unbounded`);
        }
        continue;
      }
      visit(child, at);
    }
  };
  visit(root, root.typeName);
  return out;
}

/** Inline sizes real users send (issue 12): a call must take at least this many. */
const floors: Readonly<Record<string, number>> = {
  transactions: 100_000,
  events: 100_000,
  contacts: 10_000,
  deals: 10_000,
  journeys: 10_000,
};

const files = await meshFiles();
const methods = files.flatMap((file) => file.services.flatMap((s) => s.methods));

describe("contract limits", () => {
  it("finds every RPC", () => {
    expect(methods.length).toBeGreaterThanOrEqual(59);
  });

  it.each(methods.map((m) => [`${m.parent.typeName}/${m.name}`, m] as const))(
    "%s: every field of the request is bounded",
    (_, method) => {
      expect(unbounded(method.input)).toEqual([]);
    },
  );

  it("takes the inline sizes real users send", () => {
    const tooLow: string[] = [];
    for (const method of methods) {
      for (const f of method.input.fields) {
        const floor = floors[f.name];
        const rules = rulesOf(f)?.type;
        if (floor === undefined || f.fieldKind !== "list" || rules?.case !== "repeated") continue;
        if (Number(rules.value.maxItems ?? 0n) < floor) {
          tooLow.push(`${method.input.typeName}.${f.name}: max_items ${rules.value.maxItems} < ${floor}`);
        }
      }
    }
    expect(tooLow).toEqual([]);
  });

  it("flags an unbounded field", () => {
    // The check itself: a response message (no limits needed there) with a bare string is reported.
    const withBareString = files
      .flatMap((f) => f.messages)
      .find((m) => m.fields.some((f) => f.fieldKind === "scalar" && f.scalar === 9 && rulesOf(f) === undefined));
    expect(withBareString && unbounded(withBareString).length).toBeGreaterThan(0);
    expect(boundedPattern("^([+][1-9][0-9]{6,14})?$")).toBe(true);
    expect(boundedPattern("^[a-z]+$")).toBe(false);
    expect(boundedPattern("^(UTC|[A-Za-z]+(/[A-Za-z0-9_+-]+){1,2})$")).toBe(false);
  });
});
