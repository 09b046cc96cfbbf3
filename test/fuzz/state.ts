/**
 * What the fuzz suite watches besides answers: the state bad input must not change (row count and
 * a checksum of every table of the run's database, message count of every NATS stream under its
 * prefix), the servers' peak memory, and whether each server is alive and healthy.
 */
import { readFileSync } from "node:fs";
import type { JetStreamManager } from "@nats-io/jetstream";
import pg from "pg";

/** Table (`schema.table`) → `rows:md5`, stream → `messages`. */
export interface Snapshot {
  tables: Map<string, string>;
  streams: Map<string, string>;
}

/** Takes snapshots of one run's database and NATS streams. */
export interface StateProbe {
  snapshot(): Promise<Snapshot>;
  close(): Promise<void>;
}

/** Opens a probe on `databaseUrl` and the streams whose names start with `prefix` (upper-cased, as lib/bus names them). */
export async function openStateProbe(databaseUrl: string, jsm: JetStreamManager, prefix: string): Promise<StateProbe> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const streamPrefix = `${prefix.toUpperCase().replace(/[^A-Z0-9]/g, "_")}_`;
  return {
    async snapshot() {
      const { rows: tables } = await client.query<{ s: string; t: string }>(
        `select table_schema as s, table_name as t from information_schema.tables
          where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema')
          order by 1, 2`,
      );
      const q = (id: string) => `"${id.replace(/"/g, '""')}"`;
      const out: Snapshot = { tables: new Map(), streams: new Map() };
      if (tables.length > 0) {
        const sql = tables
          .map(
            (r) =>
              `select '${r.s}.${r.t}' as name, count(*)::text || ':' || md5(coalesce(string_agg(md5(x::text), '' order by md5(x::text)), '')) as sum from ${q(r.s)}.${q(r.t)} x`,
          )
          .join(" union all ");
        const { rows } = await client.query<{ name: string; sum: string }>(sql);
        for (const r of rows) out.tables.set(r.name, r.sum);
      }
      for await (const s of jsm.streams.list()) {
        if (s.config.name.startsWith(streamPrefix)) out.streams.set(s.config.name, String(s.state.messages));
      }
      return out;
    },
    close: () => client.end(),
  };
}

/** What differs between two snapshots, one line each (`technical.crm_contacts: 3:… → 4:…`). */
export function diffSnapshots(before: Snapshot, after: Snapshot): string[] {
  const out: string[] = [];
  for (const kind of ["tables", "streams"] as const) {
    const names = new Set([...before[kind].keys(), ...after[kind].keys()]);
    for (const n of names) {
      const a = before[kind].get(n);
      const b = after[kind].get(n);
      if (a !== b) out.push(`${n}: ${a ?? "absent"} → ${b ?? "absent"}`);
    }
  }
  return out;
}

/** Peak resident set size of a process (VmHWM), in bytes, or undefined when it has exited. */
export function peakRss(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `/healthz` answers 200 and SERVING (within 10 s). */
export async function healthy(baseUrl: string): Promise<{ ok: boolean; detail: string }> {
  try {
    const res = await fetch(`${baseUrl}/healthz`, { signal: AbortSignal.timeout(10_000) });
    const body = (await res.json()) as { status?: string };
    return { ok: res.status === 200 && body.status === "SERVING", detail: `${res.status} ${body.status}` };
  } catch (err) {
    return { ok: false, detail: String(err) };
  }
}
