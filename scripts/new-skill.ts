/**
 * Scaffolds a skill whose contract already exists: `mesh skill:new <agent-id> <MethodName> [--root DIR]`.
 *
 * Contracts come first: the RPC, its messages, protovalidate rules and skill option are written in
 * proto/ and generated into gen/ (`npm run gen`) before this runs, and the agent and method are
 * looked up in the catalog built from those descriptors. It writes two files and nothing else:
 *
 *   agents/<id>/skills/<kebab-method>.ts       the typed skill function, answering UNIMPLEMENTED
 *   agents/<id>/skills/<kebab-method>.test.ts  one `it.todo` per behaviour the tests must show
 *
 * It never overwrites a file and never registers the skill in the agent's `implemented` list: a
 * skill is listed once it works, so until then the agent keeps answering UNIMPLEMENTED for it. What
 * is left to do is printed as a checklist (docs/architecture.md, "Add a skill"). `--root` writes
 * under another directory (tests); the catalog and the agents' `implemented` lists are always this
 * build's.
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import type { DescMethod } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { type Catalog, createCatalog, type SkillMeta } from "../lib/registry/index.ts";

/** A failure the user can fix (unknown agent or method, skill already there); printed without a stack. */
export class NewSkillError extends Error {
  override name = "NewSkillError";
}

/** What the generator needs to know about the build. */
export interface SkillSource {
  /** Agents and their RPCs, from the generated descriptors. */
  readonly catalog: Catalog;
  /** RPC names each agent implements (its module's `implemented` list); agents without a module implement none. */
  readonly implemented: ReadonlyMap<string, readonly string[]>;
}

/** One file to write, relative to the root. */
export interface ScaffoldFile {
  readonly path: string;
  readonly text: string;
}

/** The scaffold of one skill. */
export interface SkillPlan {
  /** Agent id. */
  readonly agentId: string;
  /** The RPC. */
  readonly method: DescMethod;
  /** Its registry entry (undefined for an RPC without the skill option, such as a utility other agents call). */
  readonly skill: SkillMeta | undefined;
  /** The skill's entry file, then its test. */
  readonly files: readonly [ScaffoldFile, ScaffoldFile];
}

/** Biome's line width (biome.json): generated code is laid out the way `biome format` would. */
const lineWidth = 120;

/** `AnalyzeContentPerformance` → `analyze-content-performance` (`ManageApi` → `manage-api`, `HTMLReport` → `html-report`). */
export function kebabCase(name: string): string {
  return name
    .replace(/([a-z0-9])([A-Z])/g, "$1-$2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1-$2")
    .toLowerCase();
}

/** The generated module of a descriptor file, relative to `agents/<id>/skills/`. */
function genPath(fileName: string): string {
  return `../../../gen/${fileName}_pb.ts`;
}

/** Text safe inside a block comment. */
function commentSafe(text: string): string {
  return text.replaceAll("*/", "*\\/");
}

/** `text` wrapped into JSDoc lines of at most 100 columns. */
function commentLines(text: string): string[] {
  const out: string[] = [];
  for (const paragraph of commentSafe(text).split(/\n\s*\n/)) {
    if (out.length > 0) out.push(" *");
    let line = "";
    for (const word of paragraph.split(/\s+/).filter(Boolean)) {
      if (line !== "" && line.length + 1 + word.length > 97) {
        out.push(` * ${line}`);
        line = word;
      } else {
        line = line === "" ? word : `${line} ${word}`;
      }
    }
    if (line !== "") out.push(` * ${line}`);
  }
  return out;
}

/** A string literal as Biome writes it (double quotes). */
function literal(text: string): string {
  return JSON.stringify(text);
}

/**
 * A call or signature as Biome lays it out: on one line when it fits, else one argument per line,
 * each with a trailing comma (valid in both, as the templates have no rest parameter). Emitting
 * Biome's layout keeps a fresh scaffold free of formatting diffs without running Biome on it.
 */
function layout(indent: string, head: string, args: readonly string[], tail: string): string {
  const flat = `${indent}${head}${args.join(", ")}${tail}`;
  if (flat.length <= lineWidth) return flat;
  return [`${indent}${head}`, ...args.map((a) => `${indent}  ${a},`), `${indent}${tail}`].join("\n");
}

/** An import declaration as Biome lays it out (specifiers sorted, broken one per line when too long). */
function importLine(specifiers: readonly string[], from: string, typeOnly: boolean): string {
  const names = [...specifiers].sort((a, b) => a.localeCompare(b, "en"));
  const head = `import ${typeOnly ? "type " : ""}{ `;
  const flat = `${head}${names.join(", ")} } from ${literal(from)};`;
  if (flat.length <= lineWidth) return flat;
  return [`import ${typeOnly ? "type " : ""}{`, ...names.map((n) => `  ${n},`), `} from ${literal(from)};`].join("\n");
}

/** What a test must show about retries, by the method's idempotency level. */
function retryCase(method: DescMethod): string {
  switch (method.idempotency) {
    case MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS:
      return "is safe to retry: the same request answers the same response and changes nothing";
    case MethodOptions_IdempotencyLevel.IDEMPOTENT:
      return "is idempotent: a retry with the same request_id applies once and answers the first result";
    default:
      return "never repeats its effect: a retry with the same request_id does not act twice";
  }
}

/** The skill's entry file. */
function skillFile(plan: Omit<SkillPlan, "files">, names: Names): string {
  const { method, skill } = plan;
  const what = skill ? `skill ${skill.id} (${names.procedure})` : names.procedure;
  const header = skill
    ? [`/**`, ...commentLines(`${skill.title} (\`${skill.id}\`).`), ` *`, ...commentLines(skill.description)]
    : [`/**`, ...commentLines(`${names.procedure}, an RPC of the ${plan.agentId} agent that is not a registry skill.`)];
  const genImports = new Map<string, string[]>();
  for (const m of [method.input, method.output]) {
    const from = genPath(m.file.name);
    const list = genImports.get(from) ?? [];
    if (!list.includes(m.name)) list.push(m.name);
    genImports.set(from, list);
  }
  return [
    ...header,
    ` *`,
    ` * Method: TODO — the method of the field this skill applies, by name and step by step: the`,
    ` * algorithm, model or standard, its parameters and their defaults, and what happens at the edges`,
    ` * (empty or oversized input, the call's deadline, a peer agent that is unavailable).`,
    ` *`,
    ` * Reference: TODO — where that method is defined (a standard, paper or vendor documentation, with`,
    ` * the section), so a reviewer can check the implementation against it.`,
    ` */`,
    `import { Code, ConnectError } from "@connectrpc/connect";`,
    ...[...genImports.entries()]
      .sort(([a], [b]) => a.localeCompare(b, "en"))
      .map(([from, specifiers]) => importLine(specifiers, from, true)),
    importLine(["AgentDeps", "CallContext"], "../../../lib/server/index.ts", true),
    ``,
    `/**`,
    ` * What the skill needs from its agent (the agent's {@link AgentDeps} satisfy it). Name only what it`,
    ` * uses — among \`db\`, \`bus\`, \`client\`, \`catalog\`, \`config\`, \`nodeId\` too — so a test passes just that.`,
    ` */`,
    `export type ${names.deps} = Pick<AgentDeps, "now" | "log">;`,
    ``,
    `/**`,
    ` * Answers a request the server has validated against the contract's protovalidate rules; see the`,
    ` * file comment for the method. \`ctx\` carries the call's cancellation and remaining time.`,
    ` *`,
    ` * Until it is implemented it answers UNIMPLEMENTED, as the agent does for every skill missing from`,
    ` * its \`implemented\` list, so nothing pretends to work. The parameters are named with a leading \`_\``,
    ` * while unused (Biome's noUnusedFunctionParameters); drop it as the implementation uses them.`,
    ` */`,
    layout(
      "",
      `export async function ${method.localName}(`,
      [`_deps: ${names.deps}`, `_req: ${method.input.name}`, `_ctx?: CallContext`],
      `): Promise<${method.output.name}> {`,
    ),
    layout("  ", "throw new ConnectError(", [literal(`${what} is not implemented yet`), "Code.Unimplemented"], ");"),
    `}`,
    ``,
  ].join("\n");
}

/** The skill's test skeleton. */
function testFile(plan: Omit<SkillPlan, "files">, names: Names): string {
  const { method, skill } = plan;
  const label = skill ? skill.id : names.procedure;
  const cases = [
    skill?.example
      ? "answers a worked example: the skill option's example request, with the result the reference gives"
      : "answers a worked example: a known input, with the result the reference gives",
    "rejects bad input with INVALID_ARGUMENT naming the field",
    retryCase(method),
  ];
  return [
    `/**`,
    ...commentLines(
      `${skill ? `${skill.title} (\`${skill.id}\`)` : names.procedure}: the behaviour to show before the skill joins its agent's \`implemented\` list (docs/architecture.md, "Add a skill").`,
    ),
    ` *`,
    ` * A skill that stores or emits runs against real PostgreSQL and NATS (test/support/backbone.ts:`,
    ` * isolatedDatabase, isolatedBus) as the other skills' tests do; calling it through`,
    ` * createInProcessClient (lib/server) applies the contract's protovalidate rules as a server does.`,
    ` */`,
    `import { describe, it } from "vitest";`,
    importLine([method.localName], `./${names.file}.ts`, false),
    ``,
    `describe(\`${label} (\${${method.localName}.name})\`, () => {`,
    ...cases.map((c) => layout("  ", "it.todo(", [literal(c)], ");")),
    `});`,
    ``,
  ].join("\n");
}

/** Names derived from the RPC. */
interface Names {
  /** `pkg.Service/Method`. */
  procedure: string;
  /** Kebab-case file name without extension. */
  file: string;
  /** The deps type. */
  deps: string;
}

/** Resolves `agentId` and `methodName` in the catalog and renders the scaffold; throws {@link NewSkillError}. */
export function planSkill(source: SkillSource, agentId: string, methodName: string): SkillPlan {
  const { catalog } = source;
  const agent = catalog.agentById.get(agentId);
  if (agent === undefined) {
    throw new NewSkillError(
      `unknown agent "${agentId}"; the agents are: ${catalog.agents.map((a) => a.id).join(", ")}`,
    );
  }
  const implemented = source.implemented.get(agent.id) ?? [];
  const open = agent.service.methods.filter((m) => !implemented.includes(m.name)).map((m) => m.name);
  const method = agent.service.methods.find((m) => m.name === methodName);
  if (method === undefined) {
    throw new NewSkillError(
      `${agent.service.typeName} has no RPC "${methodName}". Contracts come first: add the RPC, its messages, ` +
        `validation rules and skill option to proto/${agent.service.file.name}.proto and run "npm run gen". ` +
        (open.length > 0
          ? `Not implemented yet in ${agent.id}: ${open.join(", ")}`
          : `Every RPC of ${agent.id} is implemented.`),
    );
  }
  const procedure = `${agent.service.typeName}/${method.name}`;
  if (implemented.includes(method.name)) {
    throw new NewSkillError(
      `${procedure} is already implemented: it is in the "implemented" list of agents/${agent.id}/index.ts` +
        (open.length > 0 ? `. Not implemented yet in ${agent.id}: ${open.join(", ")}` : ""),
    );
  }
  if (method.methodKind !== "unary") {
    throw new NewSkillError(`${procedure} is a ${method.methodKind} RPC; this generator scaffolds unary skills only`);
  }
  const names: Names = { procedure, file: kebabCase(method.name), deps: `${method.name}Deps` };
  const base = { agentId: agent.id, method, skill: catalog.skillByProcedure.get(procedure) };
  const dir = `agents/${agent.id}/skills`;
  return {
    ...base,
    files: [
      { path: `${dir}/${names.file}.ts`, text: skillFile(base, names) },
      { path: `${dir}/${names.file}.test.ts`, text: testFile(base, names) },
    ],
  };
}

/** Writes the plan's files under `root`; refuses (writing nothing) when any of them exists. */
export function writePlan(root: string, plan: SkillPlan): string[] {
  const existing = plan.files.filter((f) => existsSync(join(root, f.path))).map((f) => f.path);
  if (existing.length > 0) {
    throw new NewSkillError(
      `refusing to overwrite ${existing.join(" and ")}; move or delete ${existing.length > 1 ? "them" : "it"} first`,
    );
  }
  for (const f of plan.files) {
    mkdirSync(dirname(join(root, f.path)), { recursive: true });
    writeFileSync(join(root, f.path), f.text, { flag: "wx" });
  }
  return plan.files.map((f) => f.path);
}

/** What is left to do after the scaffold, in order. */
export function checklist(plan: SkillPlan): string {
  const { agentId, method } = plan;
  const [entry, test] = plan.files;
  const index = `agents/${agentId}/index.ts`;
  const fn = method.localName;
  return [
    `${plan.skill ? `skill ${plan.skill.id}` : method.name} still answers UNIMPLEMENTED. To finish it`,
    `(docs/architecture.md, "Add a skill"):`,
    `  1. Implement ${fn} in`,
    `       ${entry.path}`,
    `     Describe the method and its reference in the file comment, replace the throw, drop the "_"`,
    `     of the parameters it uses. Code shared with other skills goes in a folder of the agent`,
    `     beside skills/ (a skill never imports another skill's entry file).`,
    `  2. If it stores anything: entities in agents/${agentId}/, added to the module's data in`,
    `     ${index}, then: npm run mesh -- db:migration ${agentId} <name>`,
    `  3. When it works, register it in ${index}: add "${method.name}" to implemented,`,
    `     and ${fn}: (req, ctx) => ${fn}(deps, req, ctx) to what create(deps) returns.`,
    `  4. Write the tests in`,
    `       ${test.path}`,
    `     (against real PostgreSQL and NATS when it stores or emits).`,
    `  5. README.md: mark it implemented in "Agents and skills" and describe its method.`,
    `  Then: npx vitest run ${test.path} && npm run check`,
  ].join("\n");
}

/** The build's source: the catalog from the generated descriptors and every agent module's `implemented` list. */
export async function buildSource(): Promise<SkillSource> {
  // Imported here, not at the top: loading every agent module is only needed to run the command.
  const { agentModules } = await import("../servers/modules.ts");
  return {
    catalog: createCatalog(),
    implemented: new Map(agentModules.map((m) => [m.id, m.implemented])),
  };
}

if (import.meta.main) {
  const usage = "usage: mesh skill:new <agent-id> <MethodName> [--root DIR]";
  try {
    const { values, positionals } = parseArgs({
      allowPositionals: true,
      options: { root: { type: "string", default: process.env.MESH_ROOT ?? join(import.meta.dirname, "..") } },
    });
    const [agentId, methodName] = positionals;
    if (agentId === undefined || methodName === undefined || positionals.length > 2) {
      process.stderr.write(`${usage}\n`);
      process.exit(2);
    }
    const plan = planSkill(await buildSource(), agentId, methodName);
    for (const path of writePlan(values.root, plan)) process.stdout.write(`created ${path}\n`);
    process.stdout.write(`\n${checklist(plan)}\n`);
  } catch (err) {
    if (!(err instanceof NewSkillError) && !(err instanceof TypeError && "code" in err)) throw err;
    // NewSkillError, or parseArgs refusing an unknown option.
    process.stderr.write(`skill:new: ${err.message}\n${err instanceof NewSkillError ? "" : `${usage}\n`}`);
    process.exit(err instanceof NewSkillError ? 1 : 2);
  }
}
