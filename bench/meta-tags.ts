/**
 * The meta-tag batch for the directory's city pages: one `content.meta_tags` request with the 977
 * city pages (real cities, the sample communities' care mix; heading, keyword and secondary
 * keywords as the directory build sends them, plus a short summary paragraph written from the
 * city's data so the description rules have content to work on), sent through an in-process
 * client (serialisation, protovalidate and the skill, as a server would run them). Reported: the
 * batch time (median and worst of the runs), pages per second, and what the batch produced —
 * truncated and duplicate best titles, keyword-led titles, mean widths. The issue sets no target
 * for the batch itself; the whole directory build it is part of must stay under 15 s.
 *
 * `node bench/meta-tags.ts [runs]` runs it alone.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { generateMetaTags } from "../agents/optimization/skills/generate-meta-tags.ts";
import { careTypeLabels, createDirectoryData } from "../directory/data/index.ts";
import {
  type GenerateMetaTagsRequestSchema,
  MetaWarning,
  OptimizationService,
} from "../gen/mesh/optimization/v1/optimization_service_pb.ts";
import { createInProcessClient } from "../lib/server/index.ts";

/** Options of the scenario. */
export interface MetaTagsBenchOptions {
  /** Timed batches after one warm-up batch (default 5). */
  runs?: number;
}

/** What the scenario measured. */
export interface MetaTagsBenchResult {
  pages: number;
  runs: number;
  /** Median batch time, ms. */
  p50Ms: number;
  /** Slowest batch, ms. */
  maxMs: number;
  /** Pages per second at the median. */
  pagesPerSecond: number;
  /** Best titles cut with an ellipsis. */
  truncatedTitles: number;
  /** Pages whose best title another page shares. */
  duplicateTitles: number;
  /** Pages whose best description another page shares. */
  duplicateDescriptions: number;
  /** Best titles that start with the target keyword. */
  keywordFirstTitles: number;
  /** Best titles carrying the brand. */
  brandedTitles: number;
  meanTitlePx: number;
  meanDescriptionPx: number;
  /** Best descriptions flagged too short. */
  shortDescriptions: number;
}

type Request = MessageInitShape<typeof GenerateMetaTagsRequestSchema>;

/** The city pages' request, built from the directory's data set. */
export function cityPagesRequest(): Request {
  const data = createDirectoryData();
  const byCity = new Map<string, (typeof data.communities)[number][]>();
  for (const c of data.communities) byCity.set(c.cityId, [...(byCity.get(c.cityId) ?? []), c]);
  const names = new Map(data.cities.map((c) => [c.id, c.name]));
  return {
    brandName: "Senior Living Directory",
    candidatesPerPage: 3,
    pages: data.cities.map((city) => {
      const communities = byCity.get(city.id) ?? [];
      const place = `${city.name}, ${city.stateCode}`;
      const care = [...new Set(communities.flatMap((c) => c.careTypes.map((t) => careTypeLabels[t])))];
      const near = city.neighbours.slice(0, 3).map((n) => names.get(n.id) ?? n.id);
      const content =
        `Compare ${communities.length} senior living communities in ${city.name}, ${city.stateName}. ` +
        `Care on offer: ${care.map((c) => c.toLowerCase()).join(", ") || "independent living"}. ` +
        `Nearby markets include ${near.join(", ")}. Prices, photos and availability are sample data.`;
      return {
        url: `https://directory.example/${city.stateCode.toLowerCase()}/${city.id}/`,
        targetKeyword: `senior living ${city.name} ${city.stateCode}`,
        secondaryKeywords: care,
        heading: `Senior living in ${place}`,
        content,
      };
    }),
  };
}

const round = (x: number, d = 1): number => Math.round(x * 10 ** d) / 10 ** d;

/** Runs the scenario. */
export async function benchMetaTags(o: MetaTagsBenchOptions = {}): Promise<MetaTagsBenchResult> {
  const runs = o.runs ?? 5;
  const request = cityPagesRequest();
  const client = createInProcessClient(OptimizationService, {
    generateMetaTags: (req: Parameters<typeof generateMetaTags>[0]) => generateMetaTags(req),
  });
  let res = await client.generateMetaTags(request);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    res = await client.generateMetaTags(request);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const p50 = times[Math.floor((times.length - 1) / 2)] ?? 0;
  const titles = res.pages.map((p) => p.titleCandidates[0]);
  const descriptions = res.pages.map((p) => p.descriptionCandidates[0]);
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  return {
    pages: res.pages.length,
    runs,
    p50Ms: round(p50),
    maxMs: round(times.at(-1) ?? 0),
    pagesPerSecond: Math.round((res.pages.length * 1000) / Math.max(p50, 1e-9)),
    truncatedTitles: titles.filter((t) => t?.truncated).length,
    duplicateTitles: res.pages.filter((p) => p.duplicateTitleUrls.length > 0).length,
    duplicateDescriptions: res.pages.filter((p) => p.duplicateDescriptionUrls.length > 0).length,
    keywordFirstTitles: titles.filter((t) => t?.keywordOffset === 0).length,
    brandedTitles: titles.filter((t) => t !== undefined && !t.warnings.includes(MetaWarning.BRAND_OMITTED)).length,
    meanTitlePx: round(mean(titles.map((t) => t?.pixelWidth ?? 0))),
    meanDescriptionPx: round(mean(descriptions.map((d) => d?.pixelWidth ?? 0))),
    shortDescriptions: descriptions.filter((d) => d?.warnings.includes(MetaWarning.TOO_SHORT)).length,
  };
}

/** One line per figure, for `npm run bench` and the stand-alone run. */
export function formatMetaTags(r: MetaTagsBenchResult): string {
  return (
    `  ${r.pages} pages in ${r.p50Ms} ms (p50 of ${r.runs}, max ${r.maxMs} ms) = ${r.pagesPerSecond} pages/s   ` +
    `target: none for the batch (the directory build it belongs to: < 15 s) ${r.p50Ms < 15_000 ? "✓" : "✗"}\n` +
    `  best titles: ${r.keywordFirstTitles} keyword-first, ${r.brandedTitles} branded, ${r.truncatedTitles} truncated, ` +
    `${r.duplicateTitles} duplicated, mean ${r.meanTitlePx} px of 580\n` +
    `  best descriptions: ${r.duplicateDescriptions} duplicated, ${r.shortDescriptions} under 400 px, mean ${r.meanDescriptionPx} px of 920\n`
  );
}

if (import.meta.main) {
  const runs = Number(process.argv[2] ?? 5);
  process.stdout.write(`meta tags: one content.meta_tags batch of the directory's city pages, ${runs} runs\n`);
  process.stdout.write(formatMetaTags(await benchMetaTags({ runs })));
}
