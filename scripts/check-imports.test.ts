/**
 * The import rules of docs/architecture.md, checked by `npm run check`: each rule flags the import
 * that breaks it (on a scratch tree), the checker's command fails on such a tree, and this
 * repository follows every rule.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkImport, checkImports } from "./check-imports.ts";

const repo = join(import.meta.dirname, "..");

describe("import rules", () => {
  it("allow what the layers allow", () => {
    expect(checkImport("agents/seo/skills/sitemap.ts", "lib/db/index.ts")).toEqual([]);
    expect(checkImport("agents/seo/skills/sitemap.ts", "gen/mesh/seo/v1/seo_service_pb.ts")).toEqual([]);
    expect(checkImport("agents/seo/skills/sitemap.ts", "agents/seo/crawl/robots-rules.ts")).toEqual([]);
    expect(checkImport("lib/bus/outbox.ts", "lib/bus/bus.ts")).toEqual([]);
    expect(checkImport("directory/service.ts", "lib/transport/index.ts")).toEqual([]);
    expect(checkImport("servers/modules.ts", "agents/seo/index.ts")).toEqual([]);
    expect(checkImport("servers/modules.ts", "directory/index.ts")).toEqual([]);
    // Tests compose what they exercise.
    expect(checkImport("lib/cache/replicated.test.ts", "servers/domains.ts")).toEqual([]);
  });

  it.each([
    ["lib/server/run.ts", "agents/seo/index.ts", /lib may not import agents/],
    ["lib/db/domains.ts", "directory/entities.ts", /lib may not import products/],
    ["lib/workflow/smoke.ts", "workflows/index.ts", /lib may not import products/],
    ["lib/config/index.ts", "servers/modules.ts", /lib may not import entry points/],
    ["agents/seo/index.ts", "directory/index.ts", /agents may not import products/],
    ["agents/seo/skills/link-outreach.ts", "agents/email/index.ts", /an agent never imports another agent/],
    ["directory/service.ts", "agents/seo/index.ts", /products .* may not import agents/],
    ["directory/visitors.ts", "workflows/index.ts", /directory may not import workflows/],
    ["agents/seo/skills/page-speed.ts", "lib/transport/retry.ts", /import lib\/transport\/index\.ts/],
    ["directory/visitors.ts", "lib/workflow/engine.ts", /import lib\/workflow\/index\.ts/],
    ["lib/workflow/engine.ts", "lib/bus/outbox.ts", /import lib\/bus\/index\.ts/],
    ["agents/seo/skills/page-speed.ts", "agents/seo/skills/technical-audit.ts", /never imports another skill's entry/],
    ["gen/mesh/x_pb.ts", "lib/db/index.ts", /gen\/ .* imports only gen/],
  ])("flag %s importing %s", (file, target, message) => {
    const found = checkImport(file, target);
    expect(found.length).toBeGreaterThan(0);
    expect(found.join("\n")).toMatch(message);
  });

  describe("on a tree", () => {
    let root: string;
    const write = (path: string, text: string): void => {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      writeFileSync(join(root, path), text);
    };
    beforeAll(() => {
      root = mkdtempSync(join(tmpdir(), "mesh-imports-"));
      write("lib/db/index.ts", `export { x } from "./database.ts";\n`);
      write("lib/db/database.ts", "export const x = 1;\n");
      write("lib/server/run.ts", `import { seoAgent } from "../../agents/seo/index.ts";\nexport const a = seoAgent;\n`);
      write("agents/seo/index.ts", `import { x } from "../../lib/db/index.ts";\nexport const seoAgent = x;\n`);
      write(
        "agents/seo/skills/a.ts",
        `import { b } from "./b.ts";\nimport type { Y } from "../../crm/index.ts";\nexport const a = b;\n`,
      );
      write("agents/seo/skills/b.ts", `export const b = await import("../../../lib/db/database.ts");\n`);
      write("agents/seo/skills/a.test.ts", `import { b } from "./b.ts";\nexport const t = b;\n`);
      write("agents/crm/index.ts", "export type Y = number;\n");
    });
    afterAll(() => rmSync(root, { recursive: true, force: true }));

    it("finds each violation with its file and line, and skips tests", () => {
      const found = checkImports(root).map((v) => `${v.file}:${v.line} ${v.target}`);
      expect(found).toEqual([
        "agents/seo/skills/a.ts:1 agents/seo/skills/b.ts",
        "agents/seo/skills/a.ts:2 agents/crm/index.ts",
        "agents/seo/skills/b.ts:1 lib/db/database.ts",
        "lib/server/run.ts:1 agents/seo/index.ts",
      ]);
    });

    it("makes the checker's command (a step of npm run check) fail", () => {
      const r = spawnSync(process.execPath, [join(repo, "scripts", "check-imports.ts"), "--root", root], {
        encoding: "utf8",
      });
      expect(r.status).toBe(1);
      expect(r.stdout).toMatch(/4 import\(s\) break the layer rules/);
      expect(r.stdout).toMatch(/lib\/server\/run\.ts:1: imports agents\/seo\/index\.ts: lib may not import agents/);
    });
  });

  it("hold in this repository", () => {
    expect(checkImports(repo)).toEqual([]);
  });
});
