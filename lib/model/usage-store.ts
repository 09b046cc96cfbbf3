/**
 * Where model usage is recorded: one row per call (skill, run, tokens, cost). The PostgreSQL store
 * writes the framework's `model_usage` table of the server's schema (lib/db), so budgets hold across
 * restarts and replicas; the in-memory store serves tests and tools without a database.
 */
import { type Database, ModelUsageRecord } from "../db/index.ts";
import type { ProviderKind } from "./types.ts";

/** One recorded call. */
export interface UsageEntry {
  readonly skill: string;
  /** Empty outside a workflow run. */
  readonly runId: string;
  readonly provider: ProviderKind;
  readonly model: string;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly cost: number;
  readonly estimated: boolean;
  readonly at: Date;
}

/** Tokens and cost summed over some calls. */
export interface UsageTotals {
  tokens: number;
  cost: number;
  calls: number;
}

/** Usage of one skill, summed. */
export interface SkillUsage extends UsageTotals {
  skill: string;
  promptTokens: number;
  completionTokens: number;
}

/** Calls since `since`, of one run when `runId` is given. */
export interface UsageQuery {
  readonly since: Date;
  readonly runId?: string;
}

/** Most skills {@link UsageStore.bySkill} returns. */
export const maxSkillRows = 200;

/** Records model calls and sums them. */
export interface UsageStore {
  /** Records one call. */
  record(entry: UsageEntry): Promise<void>;
  /** Tokens and cost of the calls matching `query`. */
  totals(query: UsageQuery): Promise<UsageTotals>;
  /** The same per skill, most tokens first, at most {@link maxSkillRows} skills. */
  bySkill(query: UsageQuery): Promise<SkillUsage[]>;
}

/** A store in memory (tests, tools); keeps at most `maxEntries` calls, dropping the oldest. */
export function createMemoryUsageStore(maxEntries = 100_000): UsageStore & { entries(): readonly UsageEntry[] } {
  const entries: UsageEntry[] = [];
  const matching = (q: UsageQuery): UsageEntry[] =>
    entries.filter((e) => e.at >= q.since && (q.runId === undefined || e.runId === q.runId));
  return {
    async record(entry) {
      entries.push(entry);
      if (entries.length > maxEntries) entries.splice(0, entries.length - maxEntries);
    },
    async totals(q) {
      const t: UsageTotals = { tokens: 0, cost: 0, calls: 0 };
      for (const e of matching(q)) {
        t.tokens += e.promptTokens + e.completionTokens;
        t.cost += e.cost;
        t.calls++;
      }
      return t;
    },
    async bySkill(q) {
      const by = new Map<string, SkillUsage>();
      for (const e of matching(q)) {
        const s = by.get(e.skill) ?? {
          skill: e.skill,
          tokens: 0,
          cost: 0,
          calls: 0,
          promptTokens: 0,
          completionTokens: 0,
        };
        s.promptTokens += e.promptTokens;
        s.completionTokens += e.completionTokens;
        s.tokens += e.promptTokens + e.completionTokens;
        s.cost += e.cost;
        s.calls++;
        by.set(e.skill, s);
      }
      return [...by.values()]
        .sort((a, b) => b.tokens - a.tokens || (a.skill < b.skill ? -1 : 1))
        .slice(0, maxSkillRows);
    },
    entries: () => entries,
  };
}

/** A store in the `model_usage` table of `db`'s schema. Writes go outside any caller transaction: the call happened. */
export function createPgUsageStore(db: Database): UsageStore {
  const table = `"${db.schema}"."model_usage"`;
  const where = (q: UsageQuery): { sql: string; params: unknown[] } =>
    q.runId === undefined
      ? { sql: "created_at >= ?", params: [q.since] }
      : { sql: "run_id = ? and created_at >= ?", params: [q.runId, q.since] };
  return {
    async record(e) {
      const em = db.fork();
      em.create(ModelUsageRecord, {
        skill: e.skill.slice(0, 255),
        runId: e.runId.slice(0, 100),
        provider: e.provider,
        model: e.model.slice(0, 255),
        promptTokens: e.promptTokens,
        completionTokens: e.completionTokens,
        cost: e.cost,
        estimated: e.estimated,
        createdAt: e.at,
      });
      await em.flush();
    },
    async totals(q) {
      const w = where(q);
      const rows = await db
        .fork()
        .getConnection()
        .execute<Array<{ tokens: string | null; cost: number | null; calls: string }>>(
          `select sum(prompt_tokens + completion_tokens) as tokens, sum(cost) as cost, count(*) as calls from ${table} where ${w.sql}`,
          w.params,
        );
      const r = rows[0];
      return { tokens: Number(r?.tokens ?? 0), cost: Number(r?.cost ?? 0), calls: Number(r?.calls ?? 0) };
    },
    async bySkill(q) {
      const w = where(q);
      const rows = await db
        .fork()
        .getConnection()
        .execute<Array<{ skill: string; prompt: string; completion: string; cost: number; calls: string }>>(
          `select skill, sum(prompt_tokens) as prompt, sum(completion_tokens) as completion, sum(cost) as cost, count(*) as calls from ${table} where ${w.sql} group by skill order by sum(prompt_tokens + completion_tokens) desc, skill limit ${maxSkillRows}`,
          w.params,
        );
      return rows.map((r) => ({
        skill: r.skill,
        promptTokens: Number(r.prompt),
        completionTokens: Number(r.completion),
        tokens: Number(r.prompt) + Number(r.completion),
        cost: Number(r.cost),
        calls: Number(r.calls),
      }));
    },
  };
}
