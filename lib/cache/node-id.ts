/**
 * The node id of this process in hybrid logical clocks: unique per running instance and the same
 * across its restarts, so versions stamped before and after a restart order as one node's and two
 * instances never stamp the same (node id, time, counter).
 *
 * A pid alone is neither (containers all run as pid 1; a restart gets a new pid). Instead each
 * instance claims a numbered slot in its data directory: `node/<server>.<n>.lock` holds the
 * claimant's host name and pid, `node/<server>.<n>.id` the slot's id, made once at random. A slot
 * whose lock names a live process other than this one is taken, so a second instance on the same
 * data directory gets the next slot and its own id; a lock left by a process that died (kill -9, a
 * container restarted with the same host name) is reclaimed, so a restarted instance gets its id back.
 */
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { hostname as osHostname } from "node:os";
import { join } from "node:path";

/** Options of {@link resolveNodeId}. */
export interface NodeIdOptions {
  /** Data directory of the instance. */
  dataDir: string;
  /** Server binary name; it prefixes the id. */
  server: string;
  /** Host name (default: the OS's). */
  hostname?: string;
  /** Process id (default: this process's). */
  pid?: number;
  /** Whether a process is running (default: signal 0). */
  isAlive?: (pid: number) => boolean;
}

/** A claimed node id; `release()` gives the slot back (called on a clean exit). */
export interface NodeIdClaim {
  /** The id. */
  readonly nodeId: string;
  /** Removes the lock, so the next instance may reuse the slot. */
  release(): void;
}

const defaultIsAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
};

/** Claims a node id slot in `dataDir` for `server` (see the module comment). */
export function claimNodeId(opts: NodeIdOptions): NodeIdClaim {
  const dir = join(opts.dataDir, "node");
  mkdirSync(dir, { recursive: true });
  const host = opts.hostname ?? osHostname();
  const pid = opts.pid ?? process.pid;
  const isAlive = opts.isAlive ?? defaultIsAlive;
  const me = `${host} ${pid}`;
  for (let slot = 1; slot <= 1000; slot++) {
    const lock = join(dir, `${opts.server}.${slot}.lock`);
    if (!tryLock(lock, me, (holder) => holder === me || isStale(holder, host, isAlive))) continue;
    const idFile = join(dir, `${opts.server}.${slot}.id`);
    let nodeId = readId(idFile);
    if (nodeId === undefined) {
      nodeId = `${opts.server}-${randomBytes(6).toString("hex")}`;
      const tmp = `${idFile}.${pid}.tmp`;
      writeFileSync(tmp, `${nodeId}\n`);
      renameSync(tmp, idFile);
    }
    return {
      nodeId,
      release: () => {
        if (readHolder(lock) === me) rmSync(lock, { force: true });
      },
    };
  }
  throw new Error(`no free node id slot for ${opts.server} in ${dir}: set MESH_NODE_ID`);
}

/** A lock is stale when its holder ran on this host and is no longer running. */
function isStale(holder: string | undefined, host: string, isAlive: (pid: number) => boolean): boolean {
  if (holder === undefined) return true;
  const [h, p] = holder.split(" ");
  const pid = Number(p);
  return h === host && Number.isInteger(pid) && !isAlive(pid);
}

function readHolder(lock: string): string | undefined {
  try {
    return readFileSync(lock, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

function readId(file: string): string | undefined {
  try {
    const id = readFileSync(file, "utf8").trim();
    return /^[A-Za-z0-9._:-]{1,64}$/.test(id) ? id : undefined;
  } catch {
    return undefined;
  }
}

/** Creates `lock` exclusively, or takes it over when `reclaim(holder)` says its holder is gone. */
function tryLock(lock: string, me: string, reclaim: (holder: string | undefined) => boolean): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lock, "wx");
      writeSync(fd, `${me}\n`);
      closeSync(fd);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    if (!reclaim(readHolder(lock))) return false;
    rmSync(lock, { force: true });
  }
  return false;
}
