/**
 * Builds the directory's static site from its data: one landing page per city, a hub per state, a
 * national index, the enquiry thank-you page, each with its JSON-LD (validated), as a map of paths
 * to file contents that any web server or CDN can serve.
 */
import type { Thing } from "schema-dts";
import type { CommunityRecord, DirectoryData } from "../../../directory/index.ts";
import { careTypeLabels, geonamesCredit, stateByCode } from "../../../directory/index.ts";
import {
  buildBreadcrumbList,
  buildCollectionPage,
  buildGraph,
  buildLocalBusiness,
  type SchemaNode,
  validateJsonLd,
} from "../../../lib/schema-org/index.ts";
import { checkSitemapXml, URLSET_FOOTER, urlEntryXml, urlsetHeader } from "../skills/sitemap-xml.ts";
import {
  cityPath,
  median,
  type PageCity,
  type PageCommunity,
  renderCityPage,
  renderIndexPage,
  renderStatePage,
  renderThankYouPage,
  statePath,
  usd,
} from "./render.ts";

/** Options of {@link buildSite}. */
export interface BuildSiteOptions {
  /** Site origin, no trailing slash. */
  origin: string;
}

/** A built site. */
export interface BuiltSite {
  /** Path (`/tx/austin-tx/index.html`) → content. */
  files: Map<string, string>;
  /** City page paths (`/tx/austin-tx/`) in city order. */
  cityPages: string[];
  /** JSON-LD problems by page path (empty when every page validates). */
  jsonLdErrors: Map<string, string[]>;
}

const lowestPrice = (c: CommunityRecord): number => Math.min(...c.prices.map((p) => p.minMonthlyUsd));

function pageCommunity(c: CommunityRecord): PageCommunity {
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
  };
}

/** The JSON-LD of a city page: CollectionPage → ItemList of its communities, breadcrumbs, LocalBusinesses. */
function cityJsonLd(origin: string, city: PageCity, communities: readonly CommunityRecord[]): SchemaNode<Thing>[] {
  const url = `${origin}${cityPath(city)}`;
  const businesses = communities.map((c) =>
    buildLocalBusiness({
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
      priceRange: `${usd(lowestPrice(c))}–${usd(Math.max(...c.prices.map((p) => p.maxMonthlyUsd)))} per month`,
      amenityFeatures: [...c.careTypes.map((t) => careTypeLabels[t]), ...c.amenities],
    }),
  );
  const breadcrumbs = buildBreadcrumbList({
    id: `${url}#breadcrumbs`,
    items: [
      { name: "Home", url: `${origin}/` },
      { name: city.stateName, url: `${origin}${statePath(city.stateCode)}` },
      { name: city.name },
    ],
  });
  const collection = buildCollectionPage({
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
  });
  return [collection, breadcrumbs, ...businesses] as SchemaNode<Thing>[];
}

/** Builds every page of the site. */
export function buildSite(data: DirectoryData, opts: BuildSiteOptions): BuiltSite {
  const { origin } = opts;
  const files = new Map<string, string>();
  const jsonLdErrors = new Map<string, string[]>();
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
  const check = (path: string, docs: unknown[]): void => {
    const errors = docs.flatMap((d) => validateJsonLd(d).errors.map((e) => `${e.path}: ${e.message}`));
    if (errors.length > 0) jsonLdErrors.set(path, errors);
  };

  const cityPages: string[] = [];
  for (const record of data.cities) {
    const city = pageCities.get(record.id) as PageCity;
    const communities = byCity.get(record.id) ?? [];
    const jsonLd = [buildGraph(cityJsonLd(origin, city, communities))];
    const path = cityPath(city);
    check(path, jsonLd);
    files.set(
      `${path}index.html`,
      renderCityPage({
        origin,
        city,
        communities: communities.map(pageCommunity),
        neighbours: record.neighbours.flatMap((n) => {
          const nc = pageCities.get(n.id);
          return nc ? [{ city: nc, km: n.distanceKm, communities: byCity.get(n.id)?.length ?? 0 }] : [];
        }),
        stateMedianPrice: median(stateLowest.get(record.stateCode) ?? []),
        jsonLd,
        credit: geonamesCredit,
      }),
    );
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
    const jsonLd = [
      buildGraph([
        buildCollectionPage({
          id: `${url}#page`,
          url,
          name: `Senior living in ${name}`,
          breadcrumbId: `${url}#breadcrumbs`,
          itemListId: `${url}#cities`,
          items: cities.map((c, i) => ({ position: i + 1, url: `${origin}${cityPath(c.city)}`, name: c.city.name })),
        }),
        buildBreadcrumbList({ id: `${url}#breadcrumbs`, items: [{ name: "Home", url: `${origin}/` }, { name }] }),
      ] as SchemaNode<Thing>[]),
    ];
    check(statePath(code), jsonLd);
    files.set(
      `${statePath(code)}index.html`,
      renderStatePage({ origin, stateCode: code, stateName: name, cities, jsonLd, credit: geonamesCredit }),
    );
    return {
      stateCode: code,
      stateName: name,
      cities: cities.length,
      communities: cities.reduce((a, c) => a + c.communities, 0),
    };
  });

  const indexLd = [
    buildGraph([
      buildCollectionPage({
        id: `${origin}/#page`,
        url: `${origin}/`,
        name: "Senior Living Directory",
        itemListId: `${origin}/#states`,
        items: stateSummaries.map((s, i) => ({
          position: i + 1,
          url: `${origin}${statePath(s.stateCode)}`,
          name: s.stateName,
        })),
      }),
    ] as SchemaNode<Thing>[]),
  ];
  check("/", indexLd);
  files.set(
    "/index.html",
    renderIndexPage({ origin, states: stateSummaries, jsonLd: indexLd, credit: geonamesCredit }),
  );
  files.set("/enquiry/thanks/index.html", renderThankYouPage({ origin, credit: geonamesCredit }));

  // One sitemap (well under the protocol's 50,000 URLs), checked by parsing it back, and submitted
  // through the Sitemap: line of robots.txt (the ping endpoints are gone).
  const urls = ["/", ...stateSummaries.map((st) => statePath(st.stateCode)), ...cityPages];
  const sitemap =
    urlsetHeader(false) +
    urls
      .map((u) =>
        urlEntryXml({
          loc: `${origin}${u}`,
          lastmodMs: undefined,
          changefreq: undefined,
          priority: u === "/" ? 1 : undefined,
          images: [],
        }),
      )
      .join("") +
    URLSET_FOOTER;
  checkSitemapXml(sitemap, "urlset");
  files.set("/sitemap.xml", sitemap);
  files.set("/robots.txt", `User-agent: *\nDisallow: /enquiry\n\nSitemap: ${origin}/sitemap.xml\n`);
  return { files, cityPages, jsonLdErrors };
}
