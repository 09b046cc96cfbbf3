/**
 * Plans and builds the directory's static site from its data: one landing page per city, a hub per
 * state, a national index and the enquiry thank-you page, plus sitemap.xml and robots.txt.
 *
 * The SEO agent's own skills make the machine-readable parts: each page's JSON-LD comes from
 * `seo.schema_markup`, the sitemap from `seo.sitemap` and robots.txt from `seo.robots_txt`, always
 * through a generated client: DirectoryService's reaches the SEO agent wherever it runs, the offline
 * build's ({@link buildSite}) an SEO agent in the same process over an in-process router transport,
 * so both pass the same validation and produce the same files.
 */

import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import type { MetaTagPageSchema } from "../../gen/mesh/optimization/v1/optimization_service_pb.ts";
import {
  type GenerateSchemaMarkupResponse,
  RobotsRuleType,
  type SchemaEntitySchema,
  type SeoService,
} from "../../gen/mesh/seo/v1/seo_service_pb.ts";
import type { CommunityRecord, DirectoryData } from "../data/index.ts";
import { careTypeLabels, geonamesCredit, stateByCode } from "../data/index.ts";
import { type SiteImages, sampleSiteImages } from "./images.ts";
import {
  cityPath,
  median,
  type PageCity,
  type PageCommunity,
  type PageCopy,
  renderCityPage,
  renderIndexPage,
  renderStatePage,
  renderThankYouPage,
  statePath,
  usd,
} from "./render.ts";

/** The SEO skills a build uses: a generated client of the SEO agent (remote or in process). */
export type SiteSkills = Pick<
  Client<typeof SeoService>,
  "generateSchemaMarkup" | "generateSitemap" | "manageRobotsTxt"
>;

export type PageKind = "city" | "state" | "index" | "static";

/** A schema.org entity as `seo.schema_markup` takes it. */
export type SchemaEntityInit = MessageInitShape<typeof SchemaEntitySchema>;

/** One page of the site before rendering. */
export interface PlannedPage {
  /** File path, `/tx/austin-tx/index.html`. */
  readonly file: string;
  /** URL path listed in the sitemap (`/tx/austin-tx/`); undefined for pages kept out of it. */
  readonly url?: string;
  readonly kind: PageKind;
  /** Everything the HTML is rendered from (hashed by incremental builds to skip unchanged pages). */
  readonly inputs: unknown;
  /** The page's schema.org entities, for `seo.schema_markup`; empty when the page has none. */
  readonly entities: readonly SchemaEntityInit[];
  /** What `content.meta_tags` needs to write the page's title and description (city pages). */
  readonly metaTags?: MessageInitShape<typeof MetaTagPageSchema>;
  /** The HTML, from the page's JSON-LD documents and (city pages) copy from the content agents. */
  render(jsonLd: unknown[], copy?: PageCopy): string;
}

/** Every page of the site, planned from the data. */
export interface SitePlan {
  readonly origin: string;
  readonly pages: readonly PlannedPage[];
  /** City page URL paths (`/tx/austin-tx/`) in city order. */
  readonly cityPages: readonly string[];
  /** State and district hubs. */
  readonly statePages: number;
  /** Image files the pages reference, by site path (`/img/…-320.webp`). */
  readonly images: ReadonlyMap<string, Buffer>;
}

/** A built site. */
export interface BuiltSite {
  /** Path (`/tx/austin-tx/index.html`) → content (text, or the bytes of an image). */
  files: Map<string, string | Buffer>;
  /** City page paths (`/tx/austin-tx/`) in city order. */
  cityPages: string[];
  /** JSON-LD problems by page file (empty when every page validates). */
  jsonLdErrors: Map<string, string[]>;
}

const lowestPrice = (c: CommunityRecord): number => Math.min(...c.prices.map((p) => p.minMonthlyUsd));

function pageCommunity(c: CommunityRecord, images: SiteImages): PageCommunity {
  return {
    slug: c.id,
    name: c.name,
    street: c.streetAddress,
    postalCode: c.postalCode,
    phone: c.phone,
    lat: c.latitude,
    lon: c.longitude,
    careTypes: c.careTypes.map((t) => careTypeLabels[t]),
    prices: c.prices.map((p) => ({ careType: careTypeLabels[p.careType], min: p.minMonthlyUsd, max: p.maxMonthlyUsd })),
    capacity: c.capacity,
    yearOpened: c.yearOpened,
    amenities: [...c.amenities],
    image: images.forCommunity(c.id),
  };
}

/** The schema.org entities of a city page: CollectionPage → ItemList of its communities, breadcrumbs, LocalBusinesses. */
function cityEntities(
  origin: string,
  city: PageCity,
  communities: readonly CommunityRecord[],
  images: SiteImages,
): SchemaEntityInit[] {
  const url = `${origin}${cityPath(city)}`;
  const collection: SchemaEntityInit = {
    entity: {
      case: "collectionPage",
      value: {
        id: `${url}#page`,
        url,
        name: `Senior living in ${city.name}, ${city.stateCode}`,
        breadcrumbId: `${url}#breadcrumbs`,
        itemListId: `${url}#communities`,
        inLanguage: "en-US",
        items: communities.map((c, i) => ({
          position: i + 1,
          url: `${url}#${c.id}`,
          itemId: `${url}#${c.id}`,
          name: c.name,
        })),
      },
    },
  };
  const breadcrumbs: SchemaEntityInit = {
    entity: {
      case: "breadcrumbList",
      value: {
        id: `${url}#breadcrumbs`,
        items: [
          { name: "Home", url: `${origin}/` },
          { name: city.stateName, url: `${origin}${statePath(city.stateCode)}` },
          { name: city.name },
        ],
      },
    },
  };
  const businesses = communities.map(
    (c): SchemaEntityInit => ({
      entity: {
        case: "localBusiness",
        value: {
          id: `${url}#${c.id}`,
          name: c.name,
          description: c.description,
          address: {
            streetLines: [c.streetAddress],
            locality: c.locality,
            region: c.stateCode,
            postalCode: c.postalCode,
            countryCode: "US",
          },
          geo: { latitude: c.latitude, longitude: c.longitude },
          telephone: c.phone,
          url: `${url}#${c.id}`,
          images: [`${origin}${images.forCommunity(c.id).largest}`],
          priceRange: `${usd(lowestPrice(c))}–${usd(Math.max(...c.prices.map((p) => p.maxMonthlyUsd)))} per month`,
          amenityFeatures: [...c.careTypes.map((t) => careTypeLabels[t]), ...c.amenities],
        },
      },
    }),
  );
  return [collection, breadcrumbs, ...businesses];
}

/** A CollectionPage entity listing links (state hubs, the national index). */
function collectionEntity(opts: {
  url: string;
  name: string;
  listId: string;
  breadcrumbs: boolean;
  items: Array<{ url: string; name: string }>;
}): SchemaEntityInit {
  return {
    entity: {
      case: "collectionPage",
      value: {
        id: `${opts.url}#page`,
        url: opts.url,
        name: opts.name,
        breadcrumbId: opts.breadcrumbs ? `${opts.url}#breadcrumbs` : "",
        itemListId: `${opts.url}#${opts.listId}`,
        items: opts.items.map((item, i) => ({ position: i + 1, ...item })),
      },
    },
  };
}

/**
 * Plans every page of the site from the data: paths, render inputs and schema.org entities.
 * `images` are the encoded community images, from {@link sampleSiteImages}.
 */
export function planSite(data: DirectoryData, opts: { origin: string; images: SiteImages }): SitePlan {
  const { origin, images } = opts;
  const pages: PlannedPage[] = [];
  const byCity = new Map<string, CommunityRecord[]>();
  for (const c of data.communities) {
    const list = byCity.get(c.cityId) ?? [];
    list.push(c);
    byCity.set(c.cityId, list);
  }
  const pageCities = new Map<string, PageCity>(
    data.cities.map((c) => [
      c.id,
      {
        slug: c.id,
        name: c.name,
        stateCode: c.stateCode,
        stateName: c.stateName,
        lat: c.latitude,
        lon: c.longitude,
        population: c.population,
      },
    ]),
  );
  const stateLowest = new Map<string, number[]>();
  for (const c of data.communities) {
    const xs = stateLowest.get(c.stateCode) ?? [];
    xs.push(lowestPrice(c));
    stateLowest.set(c.stateCode, xs);
  }

  const cityPages: string[] = [];
  for (const record of data.cities) {
    const city = pageCities.get(record.id) as PageCity;
    const communities = byCity.get(record.id) ?? [];
    const path = cityPath(city);
    const inputs = {
      origin,
      city,
      communities: communities.map((c) => pageCommunity(c, images)),
      neighbours: record.neighbours.flatMap((n) => {
        const nc = pageCities.get(n.id);
        return nc ? [{ city: nc, km: n.distanceKm, communities: byCity.get(n.id)?.length ?? 0 }] : [];
      }),
      stateMedianPrice: median(stateLowest.get(record.stateCode) ?? []),
      credit: geonamesCredit,
    };
    const place = `${city.name}, ${city.stateCode}`;
    pages.push({
      file: `${path}index.html`,
      url: path,
      kind: "city",
      inputs,
      entities: cityEntities(origin, city, communities, images),
      metaTags: {
        url: `${origin}${path}`,
        targetKeyword: `senior living ${city.name} ${city.stateCode}`,
        secondaryKeywords: [...new Set(communities.flatMap((c) => c.careTypes.map((t) => careTypeLabels[t])))],
        heading: `Senior living in ${place}`,
      },
      render: (jsonLd, copy) => renderCityPage({ ...inputs, jsonLd, copy }),
    });
    cityPages.push(path);
  }

  const states = [...new Set(data.cities.map((c) => c.stateCode))].sort((a, b) =>
    (stateByCode(a)?.name ?? a).localeCompare(stateByCode(b)?.name ?? b),
  );
  const stateSummaries = states.map((code) => {
    const cities = data.cities
      .filter((c) => c.stateCode === code)
      .map((c) => ({ city: pageCities.get(c.id) as PageCity, communities: byCity.get(c.id)?.length ?? 0 }))
      .sort((a, b) => a.city.name.localeCompare(b.city.name));
    const name = cities[0]?.city.stateName ?? code;
    const url = `${origin}${statePath(code)}`;
    const inputs = { origin, stateCode: code, stateName: name, cities, credit: geonamesCredit };
    pages.push({
      file: `${statePath(code)}index.html`,
      url: statePath(code),
      kind: "state",
      inputs,
      entities: [
        collectionEntity({
          url,
          name: `Senior living in ${name}`,
          listId: "cities",
          breadcrumbs: true,
          items: cities.map((c) => ({ url: `${origin}${cityPath(c.city)}`, name: c.city.name })),
        }),
        {
          entity: {
            case: "breadcrumbList",
            value: { id: `${url}#breadcrumbs`, items: [{ name: "Home", url: `${origin}/` }, { name }] },
          },
        },
      ],
      render: (jsonLd) => renderStatePage({ ...inputs, jsonLd }),
    });
    return {
      stateCode: code,
      stateName: name,
      cities: cities.length,
      communities: cities.reduce((a, c) => a + c.communities, 0),
    };
  });

  const indexInputs = { origin, states: stateSummaries, credit: geonamesCredit };
  pages.push({
    file: "/index.html",
    url: "/",
    kind: "index",
    inputs: indexInputs,
    entities: [
      collectionEntity({
        url: `${origin}/`,
        name: "Senior Living Directory",
        listId: "states",
        breadcrumbs: false,
        items: stateSummaries.map((st) => ({ url: `${origin}${statePath(st.stateCode)}`, name: st.stateName })),
      }),
    ],
    render: (jsonLd) => renderIndexPage({ ...indexInputs, jsonLd }),
  });
  const thanksInputs = { origin, credit: geonamesCredit };
  pages.push({
    file: "/enquiry/thanks/index.html",
    kind: "static",
    inputs: thanksInputs,
    entities: [],
    render: () => renderThankYouPage(thanksInputs),
  });
  return { origin, pages, cityPages, statePages: stateSummaries.length, images: images.files };
}

/** The problems `seo.schema_markup` found in a page's JSON-LD (none for a valid page). */
export function jsonLdProblems(res: GenerateSchemaMarkupResponse): string[] {
  if (res.valid) return [];
  return res.validations.flatMap((v) => [
    ...v.missingRequired.map((path) => `${v.schemaType} ${v.id}: missing required ${path}`),
    ...v.warnings.map((w) => `${v.schemaType} ${v.id}: ${w}`),
  ]);
}

/**
 * Renders planned pages, asking `seo.schema_markup` for each page's JSON-LD with at most
 * `concurrency` calls in flight; `onRendered` hears of each page as it is done.
 */
export async function renderPages(
  pages: readonly PlannedPage[],
  skills: SiteSkills,
  opts: {
    copy?: ReadonlyMap<string, PageCopy>;
    concurrency?: number;
    onRendered?: (page: PlannedPage, html: string, jsonLdErrors: string[]) => void;
  } = {},
): Promise<{ html: Map<string, string>; jsonLdErrors: Map<string, string[]> }> {
  const html = new Map<string, string>();
  const jsonLdErrors = new Map<string, string[]>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < pages.length) {
      const page = pages[next++] as PlannedPage;
      let docs: unknown[] = [];
      let errors: string[] = [];
      if (page.entities.length > 0) {
        const res = await skills.generateSchemaMarkup({ entities: [...page.entities] });
        docs = [JSON.parse(res.jsonLd) as unknown];
        errors = jsonLdProblems(res);
        if (errors.length > 0) jsonLdErrors.set(page.file, errors);
      }
      const out = page.render(docs, opts.copy?.get(page.file));
      html.set(page.file, out);
      opts.onRendered?.(page, out, errors);
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 8, pages.length) }, worker));
  return { html, jsonLdErrors };
}

/**
 * sitemap.xml from `seo.sitemap` (split with an index past the protocol's limits) and robots.txt
 * from `seo.robots_txt` announcing it; robots.txt is checked to allow the pages and keep crawlers
 * out of the enquiry endpoints. Returns the files by path.
 */
export async function publishCrawlFiles(
  plan: SitePlan,
  skills: SiteSkills,
  lastModified: (url: string) => Timestamp | undefined = () => undefined,
): Promise<{ files: Map<string, string>; changed: number }> {
  const { origin } = plan;
  const urls = plan.pages.flatMap((p) =>
    p.url === undefined
      ? []
      : [{ loc: p.url, lastmod: lastModified(p.url), ...(p.kind === "index" ? { priority: 1 } : {}) }],
  );
  const sitemap = await skills.generateSitemap({ requestId: randomUUID(), baseUrl: origin, urls });
  const files = new Map<string, string>();
  for (const f of [...sitemap.files, ...(sitemap.index ? [sitemap.index] : [])]) files.set(`/${f.name}`, f.content);
  const entry = sitemap.index ?? sitemap.files[0];
  const firstCity = plan.cityPages[0] ?? "/";
  const robots = await skills.manageRobotsTxt({
    requestId: randomUUID(),
    siteUrl: origin,
    source: {
      case: "spec",
      value: {
        groups: [{ userAgents: ["*"], rules: [{ type: RobotsRuleType.DISALLOW, path: "/enquiry" }] }],
        sitemaps: entry ? [entry.url] : [],
      },
    },
    tests: [
      { url: `${origin}${firstCity}`, userAgent: "Googlebot" },
      { url: `${origin}/enquiry/thanks/`, userAgent: "Googlebot" },
    ],
  });
  const [page, enquiry] = robots.results;
  if (page?.allowed !== true || enquiry?.allowed !== false) {
    throw new Error("robots.txt must allow the pages and disallow /enquiry");
  }
  files.set("/robots.txt", robots.content);
  const changed = [...sitemap.files, ...(sitemap.index ? [sitemap.index] : [])].filter((f) => f.changed).length;
  return { files, changed };
}

/** Builds every page of the site in this process (the offline build): plan, render, crawl files. */
export async function buildSite(data: DirectoryData, opts: { origin: string; skills: SiteSkills }): Promise<BuiltSite> {
  const { skills } = opts;
  const plan = planSite(data, { origin: opts.origin, images: await sampleSiteImages() });
  const { html, jsonLdErrors } = await renderPages(plan.pages, skills);
  const files = new Map<string, string | Buffer>(plan.pages.map((p) => [p.file, html.get(p.file) as string]));
  for (const [path, bytes] of plan.images) files.set(path, bytes);
  for (const [path, content] of (await publishCrawlFiles(plan, skills)).files) files.set(path, content);
  return { files, cityPages: [...plan.cityPages], jsonLdErrors };
}
