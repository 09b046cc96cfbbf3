/**
 * The `mesh` CLI (run through bin/bootstrap.cjs, which provides Node 24 and dependencies):
 *   start [--all-in-one]   run the three servers (or one process hosting all ten agents)
 *   serve <server>         run one server in this process
 *   call <skill> [json]    call a skill as the operator and print the JSON response
 *   tokens [add <name> <grant>…]  create dev credentials / add a principal and print its token
 *   certs [dir]            create a dev CA and per-server certificates
 *   descriptors [file]     write the FileDescriptorSet of every contract (with imports) for codegen
 *   smoke                  run the reference workflow end to end against the running servers
 *   directory build [--origin URL] [--full] [--reseed]  build the senior-living directory's site through
 *                          the running SEO agent (only pages whose inputs changed are rendered)
 *   directory build --offline [--out DIR] [--origin URL]  build it in this process from the sample data
 *   db:migration <module> [name]  generate the next migration of a module's tables (agent id, directory, workflow)
 *   skill:new <agent> <Method>  scaffold a skill whose RPC is in proto/ (entry file + test; see docs/architecture.md)
 *   gen | check | test | bench   code generation, all checks, tests, benchmarks
 *   test:fuzz | test:faults   the whole fuzz suite (bad input on every RPC) and fault suite (kills, restarts, partitions)
 */
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { create, fromJson, toBinary, toJson } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { buildSite, createDirectoryData, writeSite } from "../directory/index.ts";
import { BuildPhase, type BuildSummary, DirectoryService } from "../gen/mesh/directory/v1/directory_service_pb.ts";
import { serviceFiles } from "../gen/mesh/services.ts";
import { WorkflowService } from "../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { ensureDevCredentials, generateToken, hashToken, parseAuthFile, readToken } from "../lib/auth/index.ts";
import { loadConfig, type ServerName, serverNames } from "../lib/config/index.ts";
import { resolveInfrastructure } from "../lib/infra/index.ts";
import { createLogger } from "../lib/log/index.ts";
import { createCatalog, findSkill, withDependencies } from "../lib/registry/index.ts";
import { serverScript, supervise } from "../lib/supervisor/index.ts";
import { createDevCertificates } from "../lib/tls/index.ts";
import { offlineSeoClient } from "../servers/offline.ts";
import { runSmoke } from "../workflows/smoke.ts";

const directoryUsage =
  "directory build [--origin URL] [--full] [--reseed] | directory build --offline [--out DIR] [--origin URL]";

const phaseLabels: Readonly<Record<number, string>> = {
  [BuildPhase.SEEDING]: "seeding",
  [BuildPhase.RENDERING]: "rendering",
  [BuildPhase.WRITING]: "writing",
};

/** A Connect transport to one of the running servers, calling as the operator. */
function operatorTransport(config: ReturnType<typeof loadConfig>, server: ServerName) {
  const token = readToken(config.dataDir, "operator", config.token);
  return createConnectTransport({
    baseUrl: config.serverUrls[server],
    httpVersion: "2",
    interceptors: [
      (next) => (req) => {
        req.header.set("authorization", `Bearer ${token}`);
        return next(req);
      },
    ],
  });
}

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
      // Runs until Ctrl-C / SIGTERM (exit 0), restarting servers that crash after they came up. A
      // server that cannot start (its port is taken, a setting is wrong…) is not restarted in a loop:
      // the supervisor prints why, stops the others — half a mesh fails every call to the agents of
      // the missing server — and `mesh start` exits with that server's start-up failure code (2 or
      // 78, see startFailureExitCodes) or 1, after stopping any embedded PostgreSQL/NATS below.
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
      const transport = operatorTransport(config, config.placement.system as ServerName);
      await runSmoke(createClient(WorkflowService, transport), { log: (l) => process.stdout.write(`${l}\n`) });
      return;
    }
    case "directory": {
      if (args[0] !== "build") throw new Error(`usage: mesh ${directoryUsage}`);
      const config = loadConfig();
      const flag = (name: string): string | undefined => {
        const i = args.indexOf(name);
        return i >= 0 ? args[i + 1] : undefined;
      };
      const origin = (flag("--origin") ?? "").replace(/\/$/, "");
      const started = performance.now();
      const bar = (label: string, done: number, total: number) => {
        const width = 30;
        const filled = total === 0 ? width : Math.round((done / total) * width);
        process.stdout.write(
          `\r${label.padEnd(9)} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total}   `,
        );
      };
      if (args.includes("--offline")) {
        // Built in this process from the generated sample data, without servers or a database.
        const out = flag("--out") ?? config.siteDir;
        const data = createDirectoryData();
        const site = await buildSite(data, { origin: origin || config.siteOrigin, skills: offlineSeoClient() });
        if (site.jsonLdErrors.size > 0) {
          throw new Error(
            `JSON-LD checks failed on ${site.jsonLdErrors.size} pages, e.g. ${[...site.jsonLdErrors][0]}`,
          );
        }
        const written = await writeSite(site, out, (done, total) => bar("writing", done, total));
        process.stdout.write(
          `\nbuilt ${site.cityPages.length} city pages, ${data.communities.length} communities, ${written.files} files (${(written.bytes / 1e6).toFixed(1)} MB), ${written.written.length} written, in ${((performance.now() - started) / 1000).toFixed(1)} s → ${out}\n`,
        );
        return;
      }
      // Through the mesh: the SEO agent's DirectoryService renders what changed with its skills.
      const seoServer = config.placement.seo as ServerName;
      const client = createClient(DirectoryService, operatorTransport(config, seoServer));
      let summary: BuildSummary | undefined;
      for await (const p of client.buildSite({
        origin,
        full: args.includes("--full"),
        reseed: args.includes("--reseed"),
      })) {
        if (p.phase === BuildPhase.DONE) summary = p.summary;
        else bar(phaseLabels[p.phase] ?? "", p.done, p.total);
      }
      if (summary === undefined) throw new Error("the build ended without a summary");
      const seconds = Number(summary.elapsed?.seconds ?? 0n) + (summary.elapsed?.nanos ?? 0) / 1e9;
      process.stdout.write(
        `\nbuilt ${summary.cityPages} city pages in ${summary.statePages} states, ${summary.communities} communities: ${summary.pagesRendered} pages rendered, ${summary.pagesReused} reused, ${summary.filesWritten} files written, ${summary.filesRemoved} removed (${(Number(summary.bytes) / 1e6).toFixed(1)} MB, copy: ${summary.copySource}) in ${seconds.toFixed(2)} s on the ${seoServer} server → ${summary.siteDir}\n`,
      );
      if (summary.jsonLdErrors > 0) throw new Error(`JSON-LD checks failed on ${summary.jsonLdErrors} pages`);
      return;
    }
    case "db:migration":
      run(join(root, "scripts", "db-migration.ts"), args);
      return;
    case "skill:new":
      run(join(root, "scripts", "new-skill.ts"), args);
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
    case "test:fuzz":
      process.env.MESH_FUZZ = "full";
      run(join(root, "node_modules", "vitest", "vitest.mjs"), ["run", "test/fuzz", ...args]);
      return;
    case "test:faults":
      process.env.MESH_FAULTS = "full";
      run(join(root, "node_modules", "vitest", "vitest.mjs"), ["run", "test/faults", ...args]);
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
