/**
 * The `mesh` CLI (run through bin/bootstrap.cjs, which provides Node 24 and dependencies):
 *   start [--all-in-one]   run the three servers (or one process hosting all ten agents)
 *   serve <server>         run one server in this process
 *   call <skill> [json]    call a skill as the operator and print the JSON response
 *   tokens [add <name> <grant>…]  create dev credentials / add a principal and print its token
 *   certs [dir]            create a dev CA and per-server certificates
 *   descriptors [file]     write the FileDescriptorSet of every contract (with imports) for codegen
 *   smoke                  run the reference workflow end to end against the running servers
 *   directory build [--out DIR] [--origin URL]  build the senior-living directory's static site
 *   db:migration <schema> [name]  generate the next migration of a schema from its entities
 *   gen | check | test | bench   code generation, all checks, tests, benchmarks
 */
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { create, fromJson, toBinary, toJson } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { buildSite } from "../agents/seo/pages/site.ts";
import { writeSite } from "../agents/seo/pages/write.ts";
import { createDirectoryData } from "../directory/index.ts";
import { serviceFiles } from "../gen/mesh/services.ts";
import { WorkflowService } from "../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { ensureDevCredentials, generateToken, hashToken, parseAuthFile, readToken } from "../lib/auth/index.ts";
import { loadConfig, type ServerName, serverNames } from "../lib/config/index.ts";
import { resolveInfrastructure } from "../lib/infra/index.ts";
import { createLogger } from "../lib/log/index.ts";
import { createCatalog } from "../lib/registry/catalog.ts";
import { withDependencies } from "../lib/registry/descriptors.ts";
import { findSkill } from "../lib/registry/service.ts";
import { serverScript, supervise } from "../lib/supervisor/index.ts";
import { createDevCertificates } from "../lib/tls/index.ts";
import { runSmoke } from "../lib/workflow/smoke.ts";

const root = process.env.MESH_ROOT ?? join(import.meta.dirname, "..");
const [command = "help", ...args] = process.argv.slice(2);

function run(script: string, scriptArgs: string[]): never {
  const r = spawnSync(process.execPath, [script, ...scriptArgs], { stdio: "inherit", cwd: root });
  process.exit(r.status ?? 1);
}

async function main(): Promise<void> {
  switch (command) {
    case "start": {
      const config = loadConfig();
      if (ensureDevCredentials(config.dataDir, config.authFile)) {
        process.stdout.write(`created dev credentials in ${config.dataDir} (tokens/operator.token calls any skill)\n`);
      }
      // Find (or start embedded) PostgreSQL and NATS once for every server.
      const infra = await resolveInfrastructure({
        dataDir: config.dataDir,
        log: createLogger(config.logLevel),
        mode: config.infraMode,
      });
      const infraEnv = { DATABASE_URL: infra.database.url, NATS_URL: infra.nats.url };
      const allInOne = args.includes("--all-in-one");
      const placement = Object.keys(config.placement)
        .map((a) => `${a}=technical`)
        .join(",");
      const servers = allInOne
        ? [
            {
              name: "all-in-one",
              script: serverScript(root, "technical"),
              env: { ...infraEnv, MESH_PLACEMENT: placement },
            },
          ]
        : serverNames.map((s) => ({ name: s, script: serverScript(root, s), env: infraEnv }));
      try {
        process.exitCode = await supervise({ servers, stopTimeoutMs: config.shutdownGraceMs + 5000 });
      } finally {
        await infra.stop();
      }
      return;
    }
    case "serve": {
      const server = args[0] as ServerName;
      if (!serverNames.includes(server)) throw new Error(`usage: mesh serve <${serverNames.join("|")}>`);
      run(serverScript(root, server), []);
      return;
    }
    case "call": {
      const [skillKey, body = "{}"] = args;
      if (skillKey === undefined) throw new Error("usage: mesh call <skill id or /pkg.Service/Method> [json]");
      const config = loadConfig();
      const catalog = createCatalog();
      const skill = findSkill(catalog, skillKey);
      if (skill === undefined) throw new Error(`no skill "${skillKey}"; list them with: mesh call registry`);
      const server = config.placement[skill.agentId] as ServerName;
      const token = readToken(config.dataDir, "operator", config.token);
      const transport = createConnectTransport({ baseUrl: config.serverUrls[server], httpVersion: "2" });
      const client = createClient(skill.method.parent, transport) as unknown as Record<
        string,
        (req: unknown, o: unknown) => Promise<never>
      >;
      const req = fromJson(skill.method.input, JSON.parse(body));
      const fn = client[skill.method.localName] as (req: unknown, o: unknown) => Promise<never>;
      const res = await fn(req, { headers: { authorization: `Bearer ${token}` }, timeoutMs: config.defaultTimeoutMs });
      process.stdout.write(`${JSON.stringify(toJson(skill.method.output, res), null, 2)}\n`);
      return;
    }
    case "tokens": {
      const config = loadConfig();
      ensureDevCredentials(config.dataDir, config.authFile);
      if (args[0] === "add") {
        const [, name, ...allow] = args;
        if (name === undefined || allow.length === 0)
          throw new Error("usage: mesh tokens add <name> <grant>… (grants: skill ids, RPC paths, globs)");
        const file = parseAuthFile(readFileSync(config.authFile, "utf8"), config.authFile);
        const token = generateToken();
        file.principals[name] = { kind: "client", tokenSha256: hashToken(token), allow };
        writeFileSync(config.authFile, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
        process.stdout.write(`${token}\n`);
        process.stderr.write(`added principal "${name}" to ${config.authFile}; restart servers to apply\n`);
        return;
      }
      process.stdout.write(
        `auth file: ${config.authFile}\ntokens:    ${join(config.dataDir, "tokens")}/<principal>.token\n`,
      );
      return;
    }
    case "certs": {
      const dir = args[0] ?? join(loadConfig().dataDir, "tls");
      const written = createDevCertificates({ dir, identities: [...serverNames, "operator"] });
      process.stdout.write(
        `${written.length ? written.join("\n") : "certificates already present"}\nuse: MESH_TLS_DIR=${dir}\n`,
      );
      return;
    }
    case "descriptors": {
      const out = args[0] ?? "mesh.binpb";
      const files = withDependencies(...serviceFiles);
      const set = create(FileDescriptorSetSchema, { file: files.map((f) => f.proto) });
      writeFileSync(out, toBinary(FileDescriptorSetSchema, set));
      process.stdout.write(
        `wrote ${out}: ${files.length} files (use with protoc --descriptor_set_in or buf generate)\n`,
      );
      return;
    }
    case "smoke": {
      const config = loadConfig();
      const token = readToken(config.dataDir, "operator", config.token);
      const transport = createConnectTransport({
        baseUrl: config.serverUrls[config.placement.system as ServerName],
        httpVersion: "2",
        interceptors: [
          (next) => (req) => {
            req.header.set("authorization", `Bearer ${token}`);
            return next(req);
          },
        ],
      });
      await runSmoke(createClient(WorkflowService, transport), { log: (l) => process.stdout.write(`${l}\n`) });
      return;
    }
    case "directory": {
      if (args[0] !== "build") throw new Error("usage: mesh directory build [--out DIR] [--origin URL]");
      const config = loadConfig();
      const flag = (name: string, def: string) => {
        const i = args.indexOf(name);
        return i >= 0 && args[i + 1] ? (args[i + 1] as string) : def;
      };
      const out = flag("--out", config.siteDir);
      const origin = flag("--origin", config.siteOrigin).replace(/\/$/, "");
      const started = performance.now();
      const data = createDirectoryData();
      const site = buildSite(data, { origin });
      if (site.jsonLdErrors.size > 0) {
        throw new Error(`JSON-LD checks failed on ${site.jsonLdErrors.size} pages, e.g. ${[...site.jsonLdErrors][0]}`);
      }
      const bar = (done: number, total: number) => {
        const width = 30;
        const filled = Math.round((done / total) * width);
        process.stdout.write(`\r[${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total} files`);
      };
      const written = await writeSite(site, out, bar);
      process.stdout.write(
        `\nbuilt ${site.cityPages.length} city pages, ${data.communities.length} communities, ${written.files} files (${(written.bytes / 1e6).toFixed(1)} MB) in ${((performance.now() - started) / 1000).toFixed(1)} s → ${out}\n`,
      );
      return;
    }
    case "db:migration":
      run(join(root, "scripts", "db-migration.ts"), args);
      return;
    case "gen":
      run(join(root, "scripts", "gen.ts"), args);
      return;
    case "check":
      run(join(root, "scripts", "check.ts"), args);
      return;
    case "test":
      run(join(root, "node_modules", "vitest", "vitest.mjs"), ["run", ...args]);
      return;
    case "bench":
      run(join(root, "bench", "run.ts"), args);
      return;
    default:
      process.stdout.write(
        readFileSync(import.meta.filename, "utf8")
          .split("*/")[0]
          ?.replace(/^\/\*\*?\n?/, "")
          .replace(/^ \* ?/gm, "") ?? "",
      );
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`mesh ${command}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
