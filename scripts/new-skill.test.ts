/**
 * The skill generator (`mesh skill:new`): its errors, the two files it writes (never over existing
 * ones, never into the repository when given `--root`), and scaffolds that pass the project's own
 * checks as generated — tsc, Biome and the import rules — for every RPC of every agent, and that
 * answer UNIMPLEMENTED when called.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, normalize } from "node:path";
import { pathToFileURL } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCatalog } from "../lib/registry/index.ts";
import { checkImport, importsOf } from "./check-imports.ts";
import {
  buildSource,
  checklist,
  kebabCase,
  NewSkillError,
  planSkill,
  type SkillSource,
  writePlan,
} from "./new-skill.ts";

const repo = join(import.meta.dirname, "..");
const catalog = createCatalog();
/** Nothing implemented, so every RPC of the build can be scaffolded whatever the agents implement today. */
const blank: SkillSource = { catalog, implemented: new Map() };
const tmpRoots: string[] = [];

function tmpRoot(): string {
  const root = mkdtempSync(join(tmpdir(), "mesh-skill-new-"));
  tmpRoots.push(root);
  return root;
}

afterAll(() => {
  for (const r of tmpRoots) rmSync(r, { recursive: true, force: true });
});

/** The message of the NewSkillError `fn` throws. */
function failure(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NewSkillError);
    return (err as Error).message;
  }
  throw new Error("expected a NewSkillError");
}

describe("skill:new", () => {
  it("names files after the RPC in kebab case", () => {
    expect(kebabCase("GenerateMetaTags")).toBe("generate-meta-tags");
    expect(kebabCase("CalculateRoi")).toBe("calculate-roi");
    expect(kebabCase("ManageRobotsTxt")).toBe("manage-robots-txt");
    expect(kebabCase("ExportHTMLReport")).toBe("export-html-report");
  });

  it("rejects an unknown agent, listing the agents", () => {
    const message = failure(() => planSkill(blank, "marketing", "GenerateMetaTags"));
    expect(message).toContain('unknown agent "marketing"');
    for (const a of catalog.agents) expect(message).toContain(a.id);
  });

  it("rejects an RPC the contract does not have (contracts first), listing what is not implemented", () => {
    const source: SkillSource = { catalog, implemented: new Map([["optimization", ["GenerateMetaTags"]]]) };
    const message = failure(() => planSkill(source, "optimization", "GenerateMetaDescriptions"));
    expect(message).toContain('mesh.optimization.v1.OptimizationService has no RPC "GenerateMetaDescriptions"');
    expect(message).toContain("proto/mesh/optimization/v1/optimization_service.proto");
    expect(message).toContain('"npm run gen"');
    expect(message).toContain("Not implemented yet in optimization: OptimizeImage, AnalyzeContentPerformance");
    expect(message).not.toMatch(/yet in optimization:.*GenerateMetaTags/);
  });

  it("rejects a skill its agent already implements", () => {
    const source: SkillSource = { catalog, implemented: new Map([["seo", ["TrackRankings"]]]) };
    const message = failure(() => planSkill(source, "seo", "TrackRankings"));
    expect(message).toContain("mesh.seo.v1.SeoService/TrackRankings is already implemented");
    expect(message).toContain("agents/seo/index.ts");
  });

  it("scaffolds a typed skill answering UNIMPLEMENTED and a test skeleton, and prints what is left", () => {
    const plan = planSkill(blank, "optimization", "GenerateMetaTags");
    const [entry, test] = plan.files;
    expect(entry.path).toBe("agents/optimization/skills/generate-meta-tags.ts");
    expect(test.path).toBe("agents/optimization/skills/generate-meta-tags.test.ts");
    expect(entry.text).toContain("Meta description and title tag generation (`content.meta_tags`)");
    expect(entry.text).toMatch(/ \* Method: TODO/);
    expect(entry.text).toMatch(/ \* Reference: TODO/);
    expect(entry.text).toContain('export type GenerateMetaTagsDeps = Pick<AgentDeps, "now" | "log">;');
    expect(entry.text).toMatch(
      /export async function generateMetaTags\(\s*_deps: GenerateMetaTagsDeps,\s*_req: GenerateMetaTagsRequest,\s*_ctx\?: CallContext,\s*\): Promise<GenerateMetaTagsResponse>/,
    );
    expect(entry.text).toContain(
      '"skill content.meta_tags (mesh.optimization.v1.OptimizationService/GenerateMetaTags) is not implemented yet"',
    );
    expect(entry.text).toContain("Code.Unimplemented");
    expect(test.text.match(/it\.todo\(/g)).toHaveLength(3);
    expect(test.text).toContain("worked example");
    expect(test.text).toContain("INVALID_ARGUMENT naming the field");
    expect(test.text).toContain("is safe to retry"); // GenerateMetaTags has no side effects

    const steps = checklist(plan);
    expect(steps).toContain("still answers UNIMPLEMENTED");
    expect(steps).toContain("docs/architecture.md");
    expect(steps).toContain('add "GenerateMetaTags" to implemented');
    expect(steps).toContain("generateMetaTags: (req, ctx) => generateMetaTags(deps, req, ctx)");
    expect(steps).toContain("npm run mesh -- db:migration optimization <name>");
    expect(steps).toContain("README.md");
  });

  it("asks the tests for the retry behaviour the RPC's idempotency level promises", () => {
    // TrackInteraction is IDEMPOTENT; ManageLinkOutreach has side effects that cannot be recalled.
    expect(planSkill(blank, "crm", "TrackInteraction").files[1].text).toContain("same request_id applies once");
    expect(planSkill(blank, "seo", "ManageLinkOutreach").files[1].text).toContain("does not act twice");
  });

  it("writes the two files and refuses to overwrite either, writing nothing", () => {
    const root = tmpRoot();
    const plan = planSkill(blank, "research", "IdeateTopics");
    expect(writePlan(root, plan)).toEqual(plan.files.map((f) => f.path));
    for (const f of plan.files) expect(readFileSync(join(root, f.path), "utf8")).toBe(f.text);

    writeFileSync(join(root, plan.files[0].path), "// work in progress\n");
    const message = failure(() => writePlan(root, plan));
    expect(message).toContain("refusing to overwrite agents/research/skills/ideate-topics.ts and");
    expect(readFileSync(join(root, plan.files[0].path), "utf8")).toBe("// work in progress\n");

    // Only the test exists: the entry file is not written either.
    const other = tmpRoot();
    mkdirSync(dirname(join(other, plan.files[1].path)), { recursive: true });
    writeFileSync(join(other, plan.files[1].path), "");
    expect(failure(() => writePlan(other, plan))).toBe(
      "refusing to overwrite agents/research/skills/ideate-topics.test.ts; move or delete it first",
    );
    expect(existsSync(join(other, plan.files[0].path))).toBe(false);
  });

  describe("every scaffold of the build, as generated", () => {
    let root: string;
    const files: string[] = [];

    beforeAll(() => {
      // A tree whose gen/, lib/ and node_modules/ are the repository's, so the scaffolds' relative
      // imports resolve as they would in agents/<id>/skills/; configured like the repository.
      root = tmpRoot();
      for (const d of ["gen", "lib", "node_modules"]) symlinkSync(join(repo, d), join(root, d));
      writeFileSync(join(root, "package.json"), '{ "type": "module" }\n');
      writeFileSync(join(root, "biome.json"), readFileSync(join(repo, "biome.json")));
      writeFileSync(
        join(root, "tsconfig.json"),
        JSON.stringify({ extends: join(repo, "tsconfig.json"), include: ["agents/**/*.ts"] }),
      );
      for (const a of catalog.agents) {
        for (const m of a.service.methods) files.push(...writePlan(root, planSkill(blank, a.id, m.name)));
      }
    });

    it("covers every RPC of every agent", () => {
      expect(files).toHaveLength(2 * catalog.agents.reduce((n, a) => n + a.service.methods.length, 0));
    });

    it("type-check (tsc, strict)", () => {
      const r = spawnSync(join(repo, "node_modules", ".bin", "tsc"), ["--noEmit", "-p", "tsconfig.json"], {
        cwd: root,
        encoding: "utf8",
      });
      // Only the scaffolds are judged here; the rest of the tree is type-checked by `npm run check`.
      const errors = r.stdout.split("\n").filter((l) => l.startsWith("agents/"));
      expect(errors).toEqual([]);
      // …but a configuration tsc could not use (no file checked at all) fails the test too.
      expect(r.stdout).not.toMatch(/^(tsconfig\.json\(|error TS)/m);
      expect(r.error).toBeUndefined();
    });

    it("pass Biome (format, lint, import order) without a warning", () => {
      const r = spawnSync(join(repo, "node_modules", ".bin", "biome"), ["check", "agents"], {
        cwd: root,
        encoding: "utf8",
      });
      const out = `${r.stdout}${r.stderr}`;
      expect(out).not.toMatch(/Found \d+ (error|warning)/);
      expect(r.status, out).toBe(0);
    });

    it("follow the import rules, importing only gen/ and lib/<m>/index.ts", () => {
      for (const file of files) {
        for (const { spec } of importsOf(readFileSync(join(root, file), "utf8"))) {
          const target = normalize(join(dirname(file), spec))
            .split("\\")
            .join("/");
          expect(checkImport(file, target), `${file} → ${target}`).toEqual([]);
          if (!file.endsWith(".test.ts")) expect(target).toMatch(/^(gen\/.*_pb\.ts|lib\/[a-z-]+\/index\.ts)$/);
        }
      }
    });

    it("answer UNIMPLEMENTED, naming the skill", async () => {
      const mod = (await import(
        pathToFileURL(join(root, "agents/optimization/skills/generate-meta-tags.ts")).href
      )) as {
        generateMetaTags(deps: unknown, req: unknown): Promise<unknown>;
      };
      const err = await mod.generateMetaTags({}, {}).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.Unimplemented);
      expect((err as ConnectError).rawMessage).toContain("skill content.meta_tags");
    });
  });

  it("runs as a command: writes under --root only, prints the checklist; errors exit 1, misuse 2", async () => {
    // An RPC this build's agents do not implement yet, whose entry file the repository does not have.
    const source = await buildSource();
    const target = catalog.agents
      .flatMap((a) => a.service.methods.map((m) => ({ agent: a.id, method: m.name })))
      .find(
        ({ agent, method }) =>
          !(source.implemented.get(agent) ?? []).includes(method) &&
          !existsSync(join(repo, "agents", agent, "skills", `${kebabCase(method)}.ts`)),
      );
    if (target === undefined) return; // every RPC is implemented: nothing left to scaffold
    const root = tmpRoot();
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [join(repo, "scripts", "new-skill.ts"), ...args], { cwd: repo, encoding: "utf8" });

    const ok = cli(target.agent, target.method, "--root", root);
    expect(ok.status, ok.stderr).toBe(0);
    const entry = `agents/${target.agent}/skills/${kebabCase(target.method)}.ts`;
    expect(ok.stdout).toContain(`created ${entry}\n`);
    expect(ok.stdout).toContain(`add "${target.method}" to implemented`);
    expect(existsSync(join(root, entry))).toBe(true);
    expect(existsSync(join(repo, entry))).toBe(false);

    const again = cli(target.agent, target.method, "--root", root);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/^skill:new: refusing to overwrite/);

    const unknown = cli("marketing", "Anything", "--root", root);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toContain('skill:new: unknown agent "marketing"; the agents are: crm, data');

    const usage = cli(target.agent);
    expect(usage.status).toBe(2);
    expect(usage.stderr).toContain("usage: mesh skill:new <agent-id> <MethodName> [--root DIR]");
  });
});
