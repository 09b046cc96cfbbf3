#!/usr/bin/env node
// Bootstrap: the one piece of plain JavaScript that runs on whatever Node the machine has (v20
// included). It makes sure the project runs on Node 24 with its dependencies installed, then
// re-runs the requested command (`bin/mesh.ts <command>`) under that Node. It never touches the
// system Node: Node 24 goes into .mesh/node inside the project, from the npm registry's `node`
// package. For the commands that need them it also installs the Debian tools the project uses
// (protoc for code generation and checks, Chromium for the browser tests) when they are missing and
// it may (as root or with password-less sudo; MESH_NO_SYSTEM_INSTALL=1 turns this off). Every step
// it takes is printed; where a step is impossible it says what to install.
"use strict";

const { spawnSync, spawn } = require("node:child_process");
const { createHash } = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const wantedNode = pkg.meshNode; // exact version, e.g. "24.21.0"
const wantedMajor = Number(wantedNode.split(".")[0]);
const localNodeDir = path.join(root, ".mesh", "node");
const localNode = path.join(localNodeDir, "bin", "node");

function say(msg) {
  process.stderr.write(`[bootstrap] ${msg}\n`);
}

function fail(msg) {
  process.stderr.write(`[bootstrap] error: ${msg}\n`);
  process.exit(1);
}

function nodeVersionOf(bin) {
  const r = spawnSync(bin, ["--version"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim().replace(/^v/, "") : null;
}

/** The Node binary to run the project with: the running one if new enough, else .mesh/node. */
function ensureNode() {
  const running = Number(process.versions.node.split(".")[0]);
  if (running >= wantedMajor) return process.execPath;
  const have = fs.existsSync(localNode) ? nodeVersionOf(localNode) : null;
  if (have === wantedNode) return localNode;
  say(
    `Node ${process.versions.node} is too old (the project needs Node ${wantedMajor}); installing Node ${wantedNode} into .mesh/node from the npm registry`,
  );
  fs.rmSync(localNodeDir, { recursive: true, force: true });
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  const r = spawnSync(
    npm,
    ["install", "--global", "--prefix", localNodeDir, "--no-audit", "--no-fund", `node@${wantedNode}`],
    { stdio: ["ignore", "inherit", "inherit"], cwd: root },
  );
  const got = fs.existsSync(localNode) ? nodeVersionOf(localNode) : null;
  if (r.status !== 0 || got !== wantedNode) {
    fail(
      `could not install Node ${wantedNode} (is the npm registry reachable?). Install Node ${wantedMajor} LTS yourself ` +
        `(https://nodejs.org or your package manager) and run the command again with it first on PATH.`,
    );
  }
  say(`Node ${got} ready in .mesh/node`);
  return localNode;
}

function lockHash() {
  const lock = path.join(root, "package-lock.json");
  const text = fs.existsSync(lock) ? fs.readFileSync(lock) : fs.readFileSync(path.join(root, "package.json"));
  return createHash("sha256").update(text).digest("hex");
}

/** Installs dependencies with `npm ci` when node_modules is absent or older than the lockfile. */
function ensureDependencies(env) {
  const stamp = path.join(root, "node_modules", ".mesh-install-stamp");
  const want = lockHash();
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, "utf8").trim() === want) return;
  say(
    fs.existsSync(path.join(root, "node_modules"))
      ? "dependencies changed since the last install; running npm ci"
      : "installing dependencies (npm ci)",
  );
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  const r = spawnSync(npm, ["ci", "--no-audit", "--no-fund"], {
    stdio: ["ignore", "inherit", "inherit"],
    cwd: root,
    env,
  });
  if (r.status !== 0) {
    fail("npm ci failed (see above). Check that the npm registry is reachable, then run the command again.");
  }
  fs.writeFileSync(stamp, `${want}\n`);
}

function sleepMs(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Serialises installs between bootstraps started at once (`npm start` and `npm test` in two
 * terminals): the first takes .mesh/bootstrap.lock, the others wait for it. A lock whose owner
 * process is gone is taken over.
 */
function withInstallLock(fn) {
  const lock = path.join(root, ".mesh", "bootstrap.lock");
  fs.mkdirSync(path.dirname(lock), { recursive: true });
  let waited = false;
  for (;;) {
    try {
      fs.mkdirSync(lock);
      fs.writeFileSync(path.join(lock, "pid"), String(process.pid));
      break;
    } catch {
      let owner = NaN;
      try {
        owner = Number(fs.readFileSync(path.join(lock, "pid"), "utf8"));
      } catch {}
      let alive = false;
      try {
        process.kill(owner, 0);
        alive = true;
      } catch {}
      if (!alive && Number.isInteger(owner)) {
        fs.rmSync(lock, { recursive: true, force: true });
        continue;
      }
      if (!waited) say("another bootstrap is installing; waiting for it");
      waited = true;
      sleepMs(250);
    }
  }
  try {
    return fn();
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

/** Debian tools by command: the program looked for, its package, and what goes without it. */
const systemTools = [
  {
    bin: "protoc",
    pkg: "protobuf-compiler",
    commands: ["gen", "check", "test", "test:fuzz", "test:faults"],
    without: "code generation, `npm run check` and the test of a client built from proto/ fail",
  },
  {
    bin: "chromium",
    pkg: "chromium",
    commands: ["test", "test:fuzz", "test:faults"],
    without: "the tests in headless Chromium are skipped",
  },
];

function onPath(bin) {
  return (process.env.PATH || "").split(path.delimiter).some((d) => d && fs.existsSync(path.join(d, bin)));
}

/** Installs the missing Debian tools the command needs, when this user may; else says what is missing. */
function ensureSystemTools(command) {
  const missing = systemTools.filter((t) => t.commands.includes(command) && !onPath(t.bin));
  if (missing.length === 0) return;
  const names = missing.map((t) => t.pkg);
  const asRoot = typeof process.getuid === "function" && process.getuid() === 0;
  const sudo = !asRoot && onPath("sudo") && spawnSync("sudo", ["-n", "true"], { stdio: "ignore" }).status === 0;
  if (process.env.MESH_NO_SYSTEM_INSTALL !== "1" && onPath("apt-get") && (asRoot || sudo)) {
    say(`installing Debian packages: ${names.join(" ")}`);
    const apt = (args) =>
      spawnSync(
        sudo ? "sudo" : "apt-get",
        [...(sudo ? ["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"] : []), ...args],
        {
          stdio: ["ignore", "ignore", "inherit"],
          env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
        },
      ).status === 0;
    // Another install (a second bootstrap, say) may hold dpkg's lock: wait for it.
    const waitForLock = ["-o", "DPkg::Lock::Timeout=300"];
    const install = [...waitForLock, "install", "-y", "-q", ...names];
    if (!apt(install)) apt([...waitForLock, "update", "-q"]) && apt(install);
  }
  for (const t of missing) {
    if (!onPath(t.bin)) say(`warning: ${t.bin} is missing (Debian package ${t.pkg}): ${t.without}`);
  }
}

function main() {
  const node = withInstallLock(ensureNode);
  const binDir = path.dirname(node);
  const env = {
    ...process.env,
    PATH: [binDir, path.join(root, "node_modules", ".bin"), process.env.PATH || ""].join(path.delimiter),
    MESH_ROOT: root,
  };
  withInstallLock(() => ensureDependencies(env));
  const args = process.argv.slice(2);
  withInstallLock(() => ensureSystemTools(args[0]));
  const child = spawn(node, [path.join(root, "bin", "mesh.ts"), ...args], {
    stdio: "inherit",
    env,
    cwd: process.cwd(),
  });
  // Signals reach the whole process group from a terminal; when sent to us alone, pass them on.
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(sig, () => {
      if (child.exitCode === null) child.kill(sig);
    });
  }
  child.on("exit", (code, signal) => {
    process.exitCode = code ?? (signal ? 128 + (require("node:os").constants.signals[signal] || 0) : 1);
  });
}

main();
