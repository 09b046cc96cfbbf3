/**
 * `npm run check`: every static check, in the order CI runs them.
 *   1. regenerate gen/ into a scratch directory and fail on any difference
 *   2. buf lint (STANDARD + COMMENTS) on our protos
 *   3. buf breaking against the base revision (MESH_BREAKING_AGAINST, else origin/main, else HEAD~1)
 *   4. tsc --noEmit (strict)
 *   5. biome check (format + lint)
 *   6. import rules of the layers (scripts/check-imports.ts, docs/architecture.md)
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { reportImports } from "./check-imports.ts";
import { generate } from "./gen.ts";
import { buildProtoImage } from "./proto-image.ts";

const root = process.env.MESH_ROOT ?? join(import.meta.dirname, "..");
const bin = (name: string): string => join(root, "node_modules", ".bin", name);
let failed = 0;

function step(name: string, fn: () => void): void {
  process.stdout.write(`\n== ${name}\n`);
  try {
    fn();
    process.stdout.write(`ok   ${name}\n`);
  } catch (err) {
    failed++;
    process.stdout.write(`FAIL ${name}: ${err instanceof Error ? err.message : String(err)}\n`);
  }
}

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with ${r.status}`);
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

step("generated code is up to date", () => {
  const scratch = mkdtempSync(join(tmpdir(), "mesh-gen-"));
  try {
    generate(join(scratch, "gen"));
    const want = listFiles(join(scratch, "gen"));
    const have = listFiles(join(root, "gen"));
    const diff = [
      ...want.filter((f) => !have.includes(f)).map((f) => `missing gen/${f}`),
      ...have.filter((f) => !want.includes(f)).map((f) => `stale gen/${f}`),
      ...want
        .filter((f) => have.includes(f))
        .filter((f) => readFileSync(join(scratch, "gen", f), "utf8") !== readFileSync(join(root, "gen", f), "utf8"))
        .map((f) => `changed gen/${f}`),
    ];
    if (diff.length > 0) throw new Error(`run "npm run gen" and commit:\n  ${diff.join("\n  ")}`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
});

const image = join(root, ".mesh", "build", "check-image.binpb");
step("buf lint", () => {
  buildProtoImage({ root, out: image });
  sh(bin("buf"), ["lint", image, "--config", join(root, "buf.yaml"), "--path", "mesh"]);
});

step("buf breaking", () => {
  const git = (...a: string[]): string => execFileSync("git", a, { cwd: root, encoding: "utf8" }).trim();
  const exists = (ref: string): boolean =>
    spawnSync("git", ["rev-parse", "--verify", "--quiet", `${ref}^{commit}`], { cwd: root }).status === 0;
  let base = process.env.MESH_BREAKING_AGAINST;
  if (!base) {
    const head = git("rev-parse", "HEAD");
    base = ["origin/main", "main", "HEAD~1"].find((r) => exists(r) && git("rev-parse", r) !== head);
  }
  if (!base || !exists(base)) {
    process.stdout.write("no base revision to compare with (first commit or shallow clone); skipped\n");
    return;
  }
  const scratch = mkdtempSync(join(tmpdir(), "mesh-breaking-"));
  try {
    const tar = execFileSync("git", ["archive", base, "proto"], { cwd: root });
    execFileSync("tar", ["-x", "-C", scratch], { input: tar });
    if (!existsSync(join(scratch, "proto"))) {
      process.stdout.write(`${base} has no proto/; skipped\n`);
      return;
    }
    const against = buildProtoImage({ root, out: join(scratch, "base.binpb"), protoDir: join(scratch, "proto") });
    process.stdout.write(`against ${base}\n`);
    sh(bin("buf"), ["breaking", image, "--against", against, "--config", join(root, "buf.yaml"), "--path", "mesh"]);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
});

step("type check (tsc --noEmit)", () => sh(bin("tsc"), ["--noEmit", "-p", join(root, "tsconfig.json")]));
step("format + lint (biome)", () => sh(bin("biome"), ["check", root]));
step("import rules (layers, modules, skills)", () => {
  const n = reportImports(root);
  if (n > 0) throw new Error(`${n} import(s) break the rules; see docs/architecture.md`);
});

process.stdout.write(failed === 0 ? "\nall checks passed\n" : `\n${failed} check(s) failed\n`);
process.exit(failed === 0 ? 0 : 1);
