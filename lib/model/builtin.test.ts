/**
 * The built-in writer: deterministic, distinct per brief, readable; its usage estimated and held to
 * the same token budgets; and usage recorded in the framework's `model_usage` table.
 */
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isolatedDatabase } from "../../test/support/backbone.ts";
import { loadConfig } from "../config/index.ts";
import { composeDomain, type Database, openDatabase } from "../db/index.ts";
import { createLogger } from "../log/index.ts";
import {
  BudgetExceededError,
  builtinModel,
  builtinWrite,
  chatMessagesFor,
  createMemoryUsageStore,
  createModelProvider,
  createPgUsageStore,
  estimatePromptTokens,
  estimateTokens,
} from "./index.ts";

/** text-readability is CommonJS without types; its default export is the scorer. */
const readabilityModule = createRequire(import.meta.url)("text-readability") as {
  default?: { fleschReadingEase(text: string): number };
  fleschReadingEase?(text: string): number;
};
const readability = (readabilityModule.default ?? readabilityModule) as { fleschReadingEase(text: string): number };

const austin = {
  title: "Memory Care in Austin: A Family Guide",
  keyword: "memory care in Austin",
  audience: "families",
  facts: [
    "The median price of memory care in Austin is $6,200 a month.",
    "Austin has 48 licensed memory care communities.",
    "Most communities offer a secured garden and daily activities.",
    "Staff ratios at night are often one aide to twelve residents.",
  ],
  sections: ["Costs of memory care", "How to choose a community", "Questions to ask on a tour"],
};
const tampa = {
  title: "Assisted Living in Tampa on a Budget",
  keyword: "assisted living Tampa",
  audience: "adult children planning for a parent",
  facts: [
    "Assisted living in Tampa costs about $4,300 a month.",
    "Many Tampa communities include meals and housekeeping in the base rent.",
    "Medicaid waivers can cover part of the cost for eligible seniors.",
  ],
  sections: [],
};

const body = (md: string): string => md.replace(/^#+ .*$/gm, "").trim();

/** Share of word 3-shingles two texts have in common (Jaccard). */
function overlap(a: string, b: string): number {
  const sh = (t: string) => {
    const w = t.toLowerCase().match(/[a-z0-9$,]+/g) ?? [];
    return new Set(w.slice(0, -2).map((_, i) => w.slice(i, i + 3).join(" ")));
  };
  const x = sh(a);
  const y = sh(b);
  let both = 0;
  for (const s of x) if (y.has(s)) both++;
  return both / (x.size + y.size - both);
}

describe("built-in writer", () => {
  it("writes the same article for the same brief, whatever the key order", () => {
    const a = builtinWrite("article", austin);
    const reordered = Object.fromEntries(Object.entries(austin).reverse());
    expect(builtinWrite("article", reordered)).toEqual(a);
    expect(builtinWrite("article", austin).text).toBe(a.text);
  });

  it("writes clearly different articles for different briefs", () => {
    const a = builtinWrite("article", austin).text;
    const b = builtinWrite("article", tampa).text;
    expect(a).not.toBe(b);
    expect(overlap(a, b)).toBeLessThan(0.2);
  });

  it("builds the outline from the brief and puts every fact under the heading it fits", () => {
    const { text, json } = builtinWrite("article", austin);
    expect(text.startsWith("# Memory Care in Austin: A Family Guide\n")).toBe(true);
    expect(json.outline).toEqual(austin.sections);
    for (const fact of austin.facts) expect(text).toContain(fact.slice(fact.indexOf(" ") + 1, -1));
    const sections = json.sections as Array<{ heading: string; paragraphs: string[] }>;
    expect(sections[0]?.paragraphs[0]).toContain("$6,200 a month");
    // Without sections the outline comes from the keyword.
    const derived = builtinWrite("article", tampa).json.outline as string[];
    expect(derived).toHaveLength(5);
    expect(derived.join(" ")).toContain("assisted living Tampa");
  });

  it("stays readable (Flesch reading ease between 50 and 100)", () => {
    for (const brief of [austin, tampa]) {
      const score = readability.fleschReadingEase(body(builtinWrite("article", brief).text));
      expect(score).toBeGreaterThan(50);
      expect(score).toBeLessThan(100);
    }
  });

  it("writes meta tags within their lengths, press releases with a dateline, summaries and alt text", () => {
    const meta = builtinWrite("meta", { ...austin, brand: "CareMesh" }).json as { title: string; description: string };
    expect(meta.title.length).toBeLessThanOrEqual(60);
    expect(meta.description.length).toBeLessThanOrEqual(155);
    expect(meta.title.toLowerCase()).toContain("memory care");

    const pr = builtinWrite("press_release", {
      headline: "CareMesh Opens Austin Office",
      city: "Austin",
      date: "2026-12-03",
      organization: "CareMesh",
      facts: ["the company opened an office on Congress Avenue.", "It will hire 40 people in 2027."],
      quote: { text: "Austin families deserve clear answers", name: "Jane Doe", title: "CEO" },
      boilerplate: "CareMesh helps families compare senior care.",
    }).text;
    expect(pr).toContain("AUSTIN, December 3, 2026 — CareMesh");
    expect(pr).toContain("“Austin families deserve clear answers.” said Jane Doe, CEO.");
    expect(pr.trim().endsWith("###")).toBe(true);

    const text =
      "Prices rose in Austin. The weather was mild. Austin prices for memory care rose again in Austin. Cats sleep.";
    expect(builtinWrite("summary", { text, sentences: 2 }).json).toEqual({
      summary: "Prices rose in Austin. Austin prices for memory care rose again in Austin.",
      sentences: ["Prices rose in Austin.", "Austin prices for memory care rose again in Austin."],
    });

    expect(
      builtinWrite("alt_text", {
        subject: "Image of residents gardening",
        setting: "a courtyard",
        keyword: "memory care",
      }).text,
    ).toBe("Residents gardening in a courtyard – memory care");
  });

  it("is the default provider, estimates its tokens and streams the same text", async () => {
    const usageStore = createMemoryUsageStore();
    const p = createModelProvider({ config: loadConfig({}, {}).model, usageStore });
    expect([p.kind, p.model]).toEqual(["builtin", builtinModel]);
    const request = { task: "article", data: austin, usage: { skill: "writing.WriteArticle", runId: "run-1" } };
    const r = await p.write(request);
    expect(r.text).toBe(builtinWrite("article", austin).text);
    expect(r.usage).toEqual({
      promptTokens: estimatePromptTokens(chatMessagesFor(request)),
      completionTokens: estimateTokens(r.text),
      totalTokens: estimatePromptTokens(chatMessagesFor(request)) + estimateTokens(r.text),
      cost: 0,
      estimated: true,
    });
    const s = p.stream(request);
    let streamed = "";
    for await (const d of s) streamed += d;
    expect(streamed).toBe(r.text);
    expect((await s.result).usage).toEqual(r.usage);
    const json = await p.write({ ...request, json: true });
    expect((json.json as { outline: string[] }).outline).toEqual(austin.sections);
    expect(usageStore.entries()).toHaveLength(3);
  });

  it("is held to the token budgets like a model", async () => {
    const request = {
      task: "article",
      data: austin,
      maxTokens: 1000,
      usage: { skill: "writing.WriteArticle", runId: "r" },
    };
    const once = await createModelProvider({ config: loadConfig({}, {}).model }).write(request);
    // Room for two calls; the third may need its prompt plus all 1000 completion tokens, one more than is left.
    const limit = 2 * once.usage.totalTokens + once.usage.promptTokens + 999;
    const config = loadConfig({}, { MESH_MODEL_RUN_TOKEN_BUDGET: String(limit) }).model;
    const usageStore = createMemoryUsageStore();
    const p = createModelProvider({ config, usageStore });
    await p.write(request);
    await p.write(request);
    const err = await p.write(request).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BudgetExceededError);
    expect((err as BudgetExceededError).breach).toEqual({
      scope: "run",
      measure: "tokens",
      limit,
      spent: 2 * once.usage.totalTokens,
      requested: once.usage.promptTokens + 1000,
    });
    expect(usageStore.entries()).toHaveLength(2);
    // Another run has its own budget.
    await p.write({ ...request, usage: { skill: "writing.WriteArticle", runId: "other" } });
  });

  it("stops at maxTokens like a model", async () => {
    const p = createModelProvider({ config: loadConfig({}, {}).model });
    const r = await p.write({ task: "article", data: austin, maxTokens: 20, usage: { skill: "s" } });
    expect(r.finishReason).toBe("length");
    expect(r.text).toHaveLength(80);
  });
});

describe("PostgreSQL usage store", () => {
  let handle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let db: Database;
  beforeAll(async () => {
    handle = await isolatedDatabase();
    db = await openDatabase({ url: handle.url, domain: composeDomain("content", []), log: createLogger("warn") });
  });
  afterAll(async () => {
    await db?.close();
    await handle?.drop();
  });

  it("records each call in model_usage and sums them per run, day and skill", async () => {
    const usageStore = createPgUsageStore(db);
    const p = createModelProvider({ config: loadConfig({}, {}).model, usageStore });
    const a = await p.write({
      task: "article",
      data: austin,
      usage: { skill: "writing.WriteArticle", runId: "run-a" },
    });
    const b = await p.write({
      task: "meta",
      data: austin,
      usage: { skill: "optimization.OptimizeMeta", runId: "run-a" },
    });
    await p.write({ task: "meta", data: tampa, usage: { skill: "optimization.OptimizeMeta" } });
    const rows = await db
      .fork()
      .getConnection()
      .execute(`select skill, run_id, provider, model, estimated from "content"."model_usage" order by id`);
    expect(rows).toEqual([
      { skill: "writing.WriteArticle", run_id: "run-a", provider: "builtin", model: builtinModel, estimated: true },
      {
        skill: "optimization.OptimizeMeta",
        run_id: "run-a",
        provider: "builtin",
        model: builtinModel,
        estimated: true,
      },
      { skill: "optimization.OptimizeMeta", run_id: "", provider: "builtin", model: builtinModel, estimated: true },
    ]);
    const run = await usageStore.totals({ since: new Date(0), runId: "run-a" });
    expect(run).toEqual({ tokens: a.usage.totalTokens + b.usage.totalTokens, cost: 0, calls: 2 });
    expect((await usageStore.totals({ since: new Date(0) })).calls).toBe(3);
    expect((await usageStore.totals({ since: new Date(Date.now() + 60_000) })).calls).toBe(0);
    const bySkill = await usageStore.bySkill({ since: new Date(0), runId: "run-a" });
    expect(bySkill).toEqual([
      {
        skill: "writing.WriteArticle",
        promptTokens: a.usage.promptTokens,
        completionTokens: a.usage.completionTokens,
        tokens: a.usage.totalTokens,
        cost: 0,
        calls: 1,
      },
      {
        skill: "optimization.OptimizeMeta",
        promptTokens: b.usage.promptTokens,
        completionTokens: b.usage.completionTokens,
        tokens: b.usage.totalTokens,
        cost: 0,
        calls: 1,
      },
    ]);
  });
});
