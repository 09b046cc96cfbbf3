/**
 * `npm run bench [-- --calls N --warmup N]`: runs the benchmark scenarios, prints them and writes
 * bench/results/<scenario>-<timestamp>.json (and <scenario>-latest.json). Benchmarks measure; they
 * never fail on a number — the targets are reported beside the results.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { printTable } from "./lib.ts";
import { benchTransport } from "./transport.ts";

const { values } = parseArgs({
  options: { calls: { type: "string", default: "5000" }, warmup: { type: "string", default: "500" } },
});
const calls = Number(values.calls);
const warmup = Number(values.warmup);
const outDir = join(import.meta.dirname, "results");
mkdirSync(outDir, { recursive: true });

process.stdout.write(
  `transport: ${calls} calls per scenario after ${warmup} warm-up calls, Node ${process.version}, ${cpus().length} cores\n\n`,
);
const { results, checks } = await benchTransport({ calls, warmup });
printTable(results);
process.stdout.write("\ntargets: mesh p99 < 5 ms, and mesh ≤ 1.5× bare connect-node (p50 and p99)\n");
for (const c of checks) {
  process.stdout.write(
    `  ${c.protocol.padEnd(7)} c=${String(c.concurrency).padEnd(2)}  p99 ${c.meshP99Ms} ms ${c.p99Under5ms ? "✓" : "✗"}  ratio p50 ${c.p50Ratio}× p99 ${c.p99Ratio}× ${c.withinRatio1_5 ? "✓" : "✗"}\n`,
  );
}
const report = {
  scenario: "transport",
  at: new Date().toISOString(),
  node: process.version,
  cpus: cpus().length,
  calls,
  warmup,
  results,
  checks,
};
const stamp = report.at.replace(/[:.]/g, "-");
writeFileSync(join(outDir, `transport-${stamp}.json`), `${JSON.stringify(report, null, 2)}\n`);
writeFileSync(join(outDir, "transport-latest.json"), `${JSON.stringify(report, null, 2)}\n`);
process.stdout.write(`\nwritten bench/results/transport-${stamp}.json\n`);
process.exit(0);
