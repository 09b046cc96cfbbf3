/**
 * A network namespace joined to the host by a veth pair, to partition one server process: the
 * process runs inside the namespace and reaches everything else over the veth; taking the
 * namespace's end of the link down cuts it off (both ways) until the link is brought up again.
 * Needs root (CAP_NET_ADMIN) and the `ip` tool.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);
const ip = (...args: string[]) => execFileAsync("ip", args);

/** A namespace with a veth link to the host. */
export interface Namespace {
  /** Namespace name (for `ip netns exec`). */
  readonly name: string;
  /** Host end address (reachable from inside the namespace, and a local address of the host). */
  readonly hostAddress: string;
  /** Namespace end address (reachable from the host while the link is up). */
  readonly nsAddress: string;
  /** The argv prefix that runs a command inside the namespace. */
  readonly exec: string[];
  /** Takes the namespace's end of the link down: the partition begins. */
  cut(): Promise<void>;
  /** Brings it up again. */
  restore(): Promise<void>;
  /** Removes the link and the namespace. */
  close(): Promise<void>;
}

/** Why namespaces cannot be used here, or undefined when they can. */
export async function netnsUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "network namespaces need root";
  if (!existsSync("/usr/sbin/ip") && !existsSync("/sbin/ip") && !existsSync("/usr/bin/ip")) return "no `ip` tool";
  const probe = `mfp${randomBytes(3).toString("hex")}`;
  try {
    await ip("netns", "add", probe);
    await ip("netns", "del", probe);
    return undefined;
  } catch (err) {
    return `ip netns add failed: ${String(err)}`;
  }
}

/** Creates a namespace linked to the host on a /30 of 10.213.0.0/16 that no interface uses yet. */
export async function createNamespace(): Promise<Namespace> {
  const id = randomBytes(3).toString("hex");
  const name = `meshf-${id}`;
  const hostIf = `mfh${id}`;
  const nsIf = `mfn${id}`;
  const { stdout } = await ip("-4", "-o", "addr", "show");
  let subnet = "";
  for (let i = 0; i < 64; i++) {
    const third = randomBytes(1)[0] ?? 0;
    const fourth = ((randomBytes(1)[0] ?? 0) & 0xfc) % 252;
    const candidate = `10.213.${third}.${fourth}`;
    if (!stdout.includes(`10.213.${third}.`)) {
      subnet = candidate;
      break;
    }
  }
  if (subnet === "") throw new Error("no free 10.213.x.y/30 subnet");
  const [a, b, c, d] = subnet.split(".").map(Number) as [number, number, number, number];
  const hostAddress = `${a}.${b}.${c}.${d + 1}`;
  const nsAddress = `${a}.${b}.${c}.${d + 2}`;
  await ip("netns", "add", name);
  try {
    await ip("link", "add", hostIf, "type", "veth", "peer", "name", nsIf);
    await ip("link", "set", nsIf, "netns", name);
    await ip("addr", "add", `${hostAddress}/30`, "dev", hostIf);
    await ip("link", "set", hostIf, "up");
    await ip("netns", "exec", name, "ip", "addr", "add", `${nsAddress}/30`, "dev", nsIf);
    await ip("netns", "exec", name, "ip", "link", "set", nsIf, "up");
    await ip("netns", "exec", name, "ip", "link", "set", "lo", "up");
  } catch (err) {
    await ip("link", "del", hostIf).catch(() => undefined);
    await ip("netns", "del", name).catch(() => undefined);
    throw err;
  }
  return {
    name,
    hostAddress,
    nsAddress,
    exec: ["ip", "netns", "exec", name],
    async cut() {
      await ip("netns", "exec", name, "ip", "link", "set", nsIf, "down");
    },
    async restore() {
      await ip("netns", "exec", name, "ip", "link", "set", nsIf, "up");
    },
    async close() {
      await ip("link", "del", hostIf).catch(() => undefined);
      await ip("netns", "del", name).catch(() => undefined);
    },
  };
}
