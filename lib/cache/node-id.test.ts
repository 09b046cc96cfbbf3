import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { claimNodeId } from "./node-id.ts";

describe("claimNodeId", () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), "mesh-node-id-"));
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  const alive = new Set<number>();
  const opts = (pid: number, hostname = "host-a") => ({
    dataDir,
    server: "technical",
    hostname,
    pid,
    isAlive: (p: number) => alive.has(p),
  });

  it("gives two running instances on one data directory different ids, even both as pid 1 on different hosts", () => {
    alive.clear();
    alive.add(1);
    const a = claimNodeId(opts(1, "container-a"));
    const b = claimNodeId(opts(1, "container-b"));
    expect(a.nodeId).toMatch(/^technical-[0-9a-f]{12}$/);
    expect(b.nodeId).toMatch(/^technical-[0-9a-f]{12}$/);
    expect(a.nodeId).not.toBe(b.nodeId);
    const c = claimNodeId(opts(1, "container-c"));
    expect(new Set([a.nodeId, b.nodeId, c.nodeId]).size).toBe(3);
  });

  it("gives a second live process on the same host the next slot", () => {
    alive.clear();
    alive.add(100).add(200);
    const a = claimNodeId(opts(100));
    const b = claimNodeId(opts(200));
    expect(a.nodeId).not.toBe(b.nodeId);
  });

  it("gives a restarted instance its id back, after a clean stop and after kill -9", () => {
    alive.clear();
    alive.add(100);
    const first = claimNodeId(opts(100));
    first.release();
    alive.delete(100);
    alive.add(101);
    const clean = claimNodeId(opts(101));
    expect(clean.nodeId).toBe(first.nodeId);
    // Killed: the lock stays behind, naming a process that no longer runs.
    alive.delete(101);
    alive.add(102);
    const afterKill = claimNodeId(opts(102));
    expect(afterKill.nodeId).toBe(first.nodeId);
    // A container restarted with the same host name runs as pid 1 again and finds its own lock.
    const containerA = claimNodeId({ ...opts(1, "pod-0"), server: "content", isAlive: () => true });
    const containerAgain = claimNodeId({ ...opts(1, "pod-0"), server: "content", isAlive: () => true });
    expect(containerAgain.nodeId).toBe(containerA.nodeId);
  });

  it("keeps ids apart per server and ignores a corrupt id file", () => {
    alive.clear();
    const t = claimNodeId({ ...opts(5), server: "technical" });
    const o = claimNodeId({ ...opts(5), server: "operations" });
    expect(t.nodeId.startsWith("technical-")).toBe(true);
    expect(o.nodeId.startsWith("operations-")).toBe(true);
    t.release();
    writeFileSync(join(dataDir, "node", "technical.1.id"), "not a valid id!\n");
    const again = claimNodeId({ ...opts(6), server: "technical" });
    expect(again.nodeId).toMatch(/^technical-[0-9a-f]{12}$/);
    expect(readFileSync(join(dataDir, "node", "technical.1.id"), "utf8").trim()).toBe(again.nodeId);
  });
});
