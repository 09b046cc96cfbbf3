/**
 * The import rules of the layered architecture (docs/architecture.md), checked by `npm run check`:
 *
 *   servers/ bin/ bench/ scripts/  →  workflows/ directory/  →  agents/<a>/  →  lib/<m>/  →  gen/
 *
 * 1. Dependencies point one way: a file never imports from a layer to its left.
 * 2. Within a layer, units stay apart: an agent never imports another agent, the directory never
 *    imports workflows/ (or the other way round); and products never import agents — they talk
 *    through generated clients.
 * 3. Outside a lib module, only its `index.ts` is imported (no deep imports into lib/<m>/…).
 * 4. A skill's entry file (`agents/<a>/skills/<skill>.ts`) never imports another skill's entry
 *    file: code two skills share becomes a module of the agent (a folder beside `skills/`).
 * 5. gen/ imports only gen/.
 *
 * Tests (`*.test.ts`, `test/`) compose what they exercise, like the servers do, and are exempt.
 * `node scripts/check-imports.ts [--root DIR]` prints every violation and exits 1 if there is one.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative, sep } from "node:path";
import { parseArgs } from "node:util";

/** One import that breaks a rule. */
export interface ImportViolation {
  /** Importing file, relative to the root, with `/` separators. */
  readonly file: string;
  /** 1-based line of the import. */
  readonly line: number;
  /** The imported file, relative to the root. */
  readonly target: string;
  /** Which rule and why. */
  readonly message: string;
}

const layerNames = ["gen", "lib", "agents", "products (directory, workflows)", "entry points"] as const;

/** Layer index (0 = gen … 4 = entry points) of a file, or undefined for files outside the layers. */
function layerOf(file: string): number | undefined {
  const top = file.split("/")[0] ?? "";
  if (top === "gen") return 0;
  if (top === "lib") return 1;
  if (top === "agents") return 2;
  if (top === "directory" || top === "workflows") return 3;
  if (top === "servers" || top === "bin" || top === "bench" || top === "scripts") return 4;
  return undefined;
}

/** The unit a file belongs to within its layer: `lib/bus`, `agents/seo`, `directory`, … */
function unitOf(file: string): string {
  const parts = file.split("/");
  if (parts[0] === "lib" || parts[0] === "agents") return parts.slice(0, 2).join("/");
  return parts[0] ?? "";
}

const isTest = (file: string): boolean => file.endsWith(".test.ts") || file.startsWith("test/");

const importPattern =
  /(?:^|[\s;}])(?:import|export)\s[^;]*?\bfrom\s*["']([^"']+)["']|\bimport\s*\(\s*["']([^"']+)["']\s*\)/g;

/** Relative specifiers imported by `source`, with the line of each. */
export function importsOf(source: string): Array<{ spec: string; line: number }> {
  const out: Array<{ spec: string; line: number }> = [];
  for (const m of source.matchAll(importPattern)) {
    const spec = m[1] ?? m[2];
    if (spec === undefined || !spec.startsWith(".")) continue;
    const offset = (m.index ?? 0) + m[0].indexOf(spec);
    out.push({ spec, line: source.slice(0, offset).split("\n").length });
  }
  return out;
}

/** The violations of one import of `file` (both relative to the root, `/` separators). */
export function checkImport(file: string, target: string): string[] {
  if (isTest(file)) return [];
  const from = layerOf(file);
  const to = layerOf(target);
  if (from === undefined || to === undefined) return [];
  const out: string[] = [];
  if (from === 0 && to !== 0) out.push("gen/ is generated from proto/ and imports only gen/");
  if (to > from) {
    out.push(
      `${layerNames[from]} may not import ${layerNames[to]}: dependencies point servers → workflows/directory → agents → lib → gen`,
    );
  } else if (from === 3 && to === 2) {
    out.push(
      `products (directory, workflows) may not import agents: ${unitOf(file)} reaches ${unitOf(target)} through its generated client`,
    );
  } else if (to === from && unitOf(file) !== unitOf(target) && (from === 2 || from === 3)) {
    out.push(
      from === 2
        ? `an agent never imports another agent (${unitOf(file)} → ${unitOf(target)}): call it through its generated client`
        : `${unitOf(file)} may not import ${unitOf(target)}: products reach each other and the agents through generated clients`,
    );
  }
  const targetParts = target.split("/");
  if (targetParts[0] === "lib" && unitOf(file) !== unitOf(target) && targetParts.slice(2).join("/") !== "index.ts") {
    out.push(`import ${unitOf(target)}/index.ts, not ${target}: a lib module's public surface is its index.ts`);
  }
  const skill = /^agents\/[^/]+\/skills\/[^/]+\.ts$/;
  if (skill.test(file) && skill.test(target) && unitOf(file) === unitOf(target) && file !== target) {
    out.push(
      "a skill never imports another skill's entry file: move what they share into a module of the agent (a folder beside skills/)",
    );
  }
  return out;
}

/** Every `.ts` file under `root` in the layered folders (node_modules and dot folders skipped). */
function sourceFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir)) {
      if (e === "node_modules" || e.startsWith(".")) continue;
      const p = join(dir, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (e.endsWith(".ts")) out.push(relative(root, p).split(sep).join("/"));
    }
  };
  for (const top of ["gen", "lib", "agents", "directory", "workflows", "servers", "bin", "bench", "scripts"]) {
    if (existsSync(join(root, top))) walk(join(root, top));
  }
  return out.sort();
}

/** Checks every import of every source file under `root`. */
export function checkImports(root: string): ImportViolation[] {
  const out: ImportViolation[] = [];
  for (const file of sourceFiles(root)) {
    if (isTest(file) || file.startsWith("gen/")) continue;
    for (const { spec, line } of importsOf(readFileSync(join(root, file), "utf8"))) {
      const target = normalize(join(dirname(file), spec))
        .split(sep)
        .join("/");
      for (const message of checkImport(file, target)) out.push({ file, line, target, message });
    }
  }
  return out;
}

/** Prints the violations under `root`; returns how many there are. */
export function reportImports(root: string, write: (line: string) => void = (l) => process.stdout.write(l)): number {
  const violations = checkImports(root);
  for (const v of violations) write(`${v.file}:${v.line}: imports ${v.target}: ${v.message}\n`);
  write(
    violations.length === 0
      ? "imports follow the layer rules\n"
      : `${violations.length} import(s) break the layer rules (docs/architecture.md)\n`,
  );
  return violations.length;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { root: { type: "string", default: join(import.meta.dirname, "..") } } });
  process.exit(reportImports(values.root) === 0 ? 0 : 1);
}
