/** Latency measurement helpers for the benchmark suite. */

/** Summary of one scenario. */
export interface LatencyResult {
  /** Scenario name. */
  name: string;
  /** Calls in flight at once. */
  concurrency: number;
  /** Calls measured (after warm-up). */
  calls: number;
  /** Median latency, ms. */
  p50: number;
  /** 90th percentile, ms. */
  p90: number;
  /** 99th percentile, ms. */
  p99: number;
  /** Mean latency, ms. */
  mean: number;
  /** Completed calls per second over the measured window. */
  throughput: number;
}

/** The q-quantile (0..1) of sorted values, nearest-rank. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] as number;
}

/** Runs `call` `calls` times with `concurrency` workers after `warmup` untimed calls. */
export async function measure(
  name: string,
  call: () => Promise<unknown>,
  opts: { calls: number; concurrency: number; warmup: number },
): Promise<LatencyResult> {
  for (let i = 0; i < opts.warmup; i++) await call();
  const samples: number[] = [];
  let next = 0;
  const start = performance.now();
  const worker = async (): Promise<void> => {
    while (next < opts.calls) {
      next++;
      const t = performance.now();
      await call();
      samples.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  const elapsed = (performance.now() - start) / 1000;
  samples.sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return {
    name,
    concurrency: opts.concurrency,
    calls: samples.length,
    p50: r(quantile(samples, 0.5)),
    p90: r(quantile(samples, 0.9)),
    p99: r(quantile(samples, 0.99)),
    mean: r(samples.reduce((a, b) => a + b, 0) / samples.length),
    throughput: Math.round(samples.length / elapsed),
  };
}

/** Prints results as an aligned table. */
export function printTable(results: readonly LatencyResult[]): void {
  const head = ["scenario", "conc", "calls", "p50 ms", "p90 ms", "p99 ms", "mean ms", "calls/s"];
  const rows = results.map((r) =>
    [r.name, r.concurrency, r.calls, r.p50, r.p90, r.p99, r.mean, r.throughput].map(String),
  );
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join("  ");
  process.stdout.write(`${line(head)}\n${line(widths.map((w) => "-".repeat(w)))}\n${rows.map(line).join("\n")}\n`);
}
