/**
 * `npm run bench [-- --calls N --warmup N]`: runs the benchmark scenarios, prints them and writes
 * bench/results/<scenario>-<timestamp>.json (and <scenario>-latest.json). Benchmarks measure; they
 * never fail on a number — the targets are reported beside the results.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { benchCacheInvalidation } from "./cache-invalidation.ts";
import { benchCrmAppointments } from "./crm-appointments.ts";
import { benchCrmDuplicates } from "./crm-duplicates.ts";
import { benchCrmMerges } from "./crm-merges.ts";
import { benchCrmPrivacy } from "./crm-privacy.ts";
import { benchCrmScoring } from "./crm-scoring.ts";
import { benchCrmSegments } from "./crm-segments.ts";
import { benchDirectory } from "./directory.ts";
import { benchEmailNewsletter } from "./email-newsletter.ts";
import { benchEmailSendTime } from "./email-send-time.ts";
import { printTable } from "./lib.ts";
import { benchMetaTags, formatMetaTags } from "./meta-tags.ts";
import { benchTransport } from "./transport.ts";
import { benchWorkflow } from "./workflow.ts";

const { values } = parseArgs({
  options: {
    calls: { type: "string", default: "5000" },
    warmup: { type: "string", default: "500" },
    samples: { type: "string", default: "1000" },
    runs: { type: "string", default: "200" },
    only: {
      type: "string",
      default:
        "transport,cache,workflow,directory,crm-duplicates,email-newsletter,crm-segments,crm-scoring,crm-appointments,crm-privacy,email-send-time,meta-tags",
    },
    "newsletter-recipients": { type: "string", default: "10000" },
    "crm-contacts": { type: "string", default: "100000" },
    "crm-merge-contacts": { type: "string", default: "20000" },
    "segment-events": { type: "string", default: "500" },
    "full-builds": { type: "string", default: "3" },
    "scoring-rate": { type: "string", default: "1200" },
    "scoring-seconds": { type: "string", default: "20" },
    "scoring-burst": { type: "string", default: "10000" },
    "scoring-concurrency": { type: "string", default: "1" },
    "scoring-batch": { type: "string", default: "500" },
  },
});
const calls = Number(values.calls);
const warmup = Number(values.warmup);
const only = new Set(values.only.split(","));
const outDir = join(import.meta.dirname, "results");
mkdirSync(outDir, { recursive: true });

/** Writes a scenario's report as <scenario>-<timestamp>.json and <scenario>-latest.json. */
function writeReport(scenario: string, body: Record<string, unknown>): void {
  const report = { scenario, at: new Date().toISOString(), node: process.version, cpus: cpus().length, ...body };
  const stamp = report.at.replace(/[:.]/g, "-");
  writeFileSync(join(outDir, `${scenario}-${stamp}.json`), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(outDir, `${scenario}-latest.json`), `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`written bench/results/${scenario}-${stamp}.json\n\n`);
}

if (only.has("transport")) {
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
  writeReport("transport", { calls, warmup, results, checks });
}

if (only.has("cache")) {
  const samples = Number(values.samples);
  process.stdout.write(
    `cache invalidation: ${samples} committed changes, each until all three servers' caches dropped the key\n`,
  );
  const r = await benchCacheInvalidation({ samples });
  process.stdout.write(
    `  p50 ${r.p50} ms  p99 ${r.p99} ms  max ${r.max} ms   target p99 < 10 ms ${r.p99 < 10 ? "✓" : "✗"}\n`,
  );
  writeReport("cache-invalidation", { result: r, targetP99Ms: 10 });
}

if (only.has("workflow")) {
  const runs = Number(values.runs);
  process.stdout.write(`workflow: ${runs} runs per scenario, StartRun until WatchRun reports SUCCEEDED\n`);
  const results = await benchWorkflow({ runs });
  printTable(results);
  writeReport("workflow", { runs, results });
}
if (only.has("directory")) {
  const fullBuilds = Number(values["full-builds"]);
  process.stdout.write(
    `directory: BuildSite through the mesh on the three servers (${fullBuilds} full builds), then incremental rebuilds\n`,
  );
  const results = await benchDirectory({ fullBuilds });
  for (const r of results) {
    process.stdout.write(
      `  ${r.scenario.padEnd(76)} ${r.seconds.toFixed(2).padStart(6)} s  ${String(r.pagesRendered).padStart(4)} pages rendered  ${String(r.filesWritten).padStart(4)} files written\n`,
    );
  }
  const full = results.filter((r) => r.scenario.startsWith("full build")).map((r) => r.seconds);
  const worst = Math.max(...full);
  process.stdout.write(
    `\ntarget: full directory build through the mesh < 15 s: worst ${worst.toFixed(2)} s ${worst < 15 ? "✓" : "✗"}\n`,
  );
  writeReport("directory", { fullBuilds, results, targetSeconds: 15 });
}
if (only.has("crm-duplicates")) {
  const contacts = Number(values["crm-contacts"]);
  process.stdout.write(`crm duplicates: DetectDuplicates on ${contacts} synthetic contacts (in process)\n`);
  const results = await benchCrmDuplicates({ contacts, runs: 1 });
  for (const r of results) {
    process.stdout.write(
      `  ${r.seconds.toFixed(2)} s  ${r.candidatePairs} pairs  ${r.matches} matches  precision ${r.precision} recall ${r.recall}   target < 60 s ${r.seconds < 60 ? "✓" : "✗"}\n`,
    );
  }
  writeReport("crm-duplicates", { contacts, results, targetSeconds: 60 });
}

if (only.has("crm-merges")) {
  const contacts = Number(values["crm-merge-contacts"]);
  process.stdout.write(
    `crm merges: DetectDuplicates over ${contacts} stored contacts, apply_merges, UnmergeContacts\n`,
  );
  const r = await benchCrmMerges({ contacts });
  process.stdout.write(
    `  detect ${r.detectSeconds} s  ${r.clusters} clusters  merge ${r.mergedContacts} contacts ${r.mergeSeconds} s  unmerge ${r.unmergeSeconds} s\n`,
  );
  writeReport("crm-merges", r as unknown as Record<string, unknown>);
}
if (only.has("email-newsletter")) {
  const recipients = Number(values["newsletter-recipients"]);
  process.stdout.write(`email newsletter: ${recipients} DKIM-signed recipients into a local SMTP server\n`);
  const r = await benchEmailNewsletter({ recipients });
  process.stdout.write(
    `  ${r.seconds.toFixed(2)} s  ${r.messagesPerSecond} messages/s  received ${r.received}  duplicates ${r.duplicates}   target ≥ 200 messages/s ${r.messagesPerSecond >= 200 ? "✓" : "✗"}\n`,
  );
  writeReport("email-newsletter", { result: r, targetMessagesPerSecond: 200 });
}
if (only.has("crm-privacy")) {
  const events = 20_000;
  process.stdout.write(`crm privacy: send-guard checks, and EraseContact with ${events} other messages in the events stream
`);
  const r = await benchCrmPrivacy({ events });
  process.stdout.write(
    `  guard ${r.guardCheckMs} ms/check (${r.guardChecks} checks)  erase ${r.eraseSeconds} s over ${r.streamMessages} stream messages, ${r.shredded} shredded\n`,
  );
  writeReport("crm-privacy", { result: r });
}
if (only.has("email-send-time")) {
  process.stdout.write(
    "email send time: Thompson sampling vs random send hours, 182 simulated days × 200 follow-ups, 3 seeds\n",
  );
  const r = benchEmailSendTime({});
  process.stdout.write(
    `  open rate ${r.openRateThompson} vs ${r.openRateUniform} random (oracle ${r.openRateOracle})  lift +${(r.lift * 100).toFixed(1)} %  (oracle +${(r.oracleLift * 100).toFixed(1)} %, ${(r.captured * 100).toFixed(0)} % captured)  by month ${r.liftByMonth.map((l) => `+${(l * 100).toFixed(0)} %`).join(" ")}  ${r.seconds} s\n`,
  );
  writeReport("email-send-time", { result: r });
}
if (only.has("crm-segments")) {
  const contacts = Number(values["crm-contacts"]);
  const events = Number(values["segment-events"]);
  process.stdout.write(
    `crm segments: full evaluation over ${contacts} contacts, and event → membership change over ${events} events (in process)\n`,
  );
  const r = await benchCrmSegments({ contacts, events });
  process.stdout.write(
    `  ${r.members} members  SegmentContacts ${r.segmentContactsSeconds} s  SaveSegment ${r.saveSeconds} s  EvaluateSegment ${r.reevaluateSeconds} s   target < 2 s ${Math.max(r.segmentContactsSeconds, r.saveSeconds, r.reevaluateSeconds) < 2 ? "✓" : "✗"}\n` +
      `  event → membership change p50 ${r.p50Ms} ms  p90 ${r.p90Ms} ms  p99 ${r.p99Ms} ms  max ${r.maxMs} ms   target p99 < 50 ms ${r.p99Ms < 50 ? "✓" : "✗"}\n` +
      `  TrackInteraction call → membership change p50 ${r.callToChangeP50Ms} ms  p99 ${r.callToChangeP99Ms} ms\n`,
  );
  writeReport("crm-segments", { result: r, targetFullSeconds: 2, targetEventP99Ms: 50 });
}
if (only.has("crm-scoring")) {
  const rate = Number(values["scoring-rate"]);
  const seconds = Number(values["scoring-seconds"]);
  const burst = Number(values["scoring-burst"]);
  const concurrency = Number(values["scoring-concurrency"]);
  const batchSize = Number(values["scoring-batch"]);
  process.stdout.write(
    `crm scoring: re-scoring from crm.interaction_tracked, ${rate} events/s offered for ${seconds} s, then a burst of ${burst} (batch loops ${concurrency}, batches of ${batchSize})\n`,
  );
  const r = await benchCrmScoring({ rate, seconds, burst, concurrency, batchSize });
  const keepsUp = r.backlogSlopePerSecond <= rate * 0.02;
  process.stdout.write(
    `  sustained ${r.sustainedPerSecond} events/s  backlog ${r.backlog.join(" ")} (slope ${r.backlogSlopePerSecond}/s)  drain ${r.drainPerSecond} events/s   target ≥ 1,000 events/s, no growing backlog ${r.sustainedPerSecond >= 1000 && keepsUp ? "✓" : "✗"}\n`,
  );
  writeReport("crm-scoring", { result: r, targetEventsPerSecond: 1000 });
}
if (only.has("crm-appointments")) {
  process.stdout.write(
    "crm appointments: slot search (4 zones), iCalendar expansion, bookings on PostgreSQL (in process)\n",
  );
  const r = await benchCrmAppointments({ runs: 50, bookings: 200 });
  process.stdout.write(
    `  slot search p50 ${r.searchP50Ms} ms  p99 ${r.searchP99Ms} ms (${r.slots} slots)  parse ${r.parseMs} ms (${r.parsedIntervals} intervals)  booking p50 ${r.bookP50Ms} ms  p99 ${r.bookP99Ms} ms\n`,
  );
  writeReport("crm-appointments", { result: r });
}
if (only.has("meta-tags")) {
  process.stdout.write("meta tags: content.meta_tags on the directory's 977 city pages in one batch (in process)\n");
  const r = await benchMetaTags({ runs: 5 });
  process.stdout.write(formatMetaTags(r));
  writeReport("meta-tags", { result: r });
}
process.exit(0);
