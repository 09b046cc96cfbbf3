/**
 * Static HTML for the senior-living directory: city landing pages, state hubs, the national index
 * and the enquiry thank-you page. Pages are for people first: one small HTML file each with its
 * critical CSS inlined, no render-blocking script (the beacon is a tiny inline script at the end of
 * the body), filters by care type and price that work without JavaScript (CSS :checked), an
 * enquiry form that is a plain POST, and JSON-LD describing the page.
 */
import { BEACON_SCRIPT } from "./beacon.ts";
import type { SiteImage } from "./images.ts";
import { STYLE } from "./style.ts";

/** A city as the pages need it. */
export interface PageCity {
  slug: string;
  name: string;
  stateCode: string;
  stateName: string;
  lat: number;
  lon: number;
  population: number;
}

/** Monthly price range of one care type at a community, USD. */
export interface PagePrice {
  careType: string;
  min: number;
  max: number;
}

/** A community as the pages need it (sample data). */
export interface PageCommunity {
  slug: string;
  name: string;
  street: string;
  postalCode: string;
  phone: string;
  lat: number;
  lon: number;
  careTypes: string[];
  prices: PagePrice[];
  capacity: number;
  yearOpened: number;
  amenities: string[];
  /** The community's image (responsive WebP variants); unset shows none. */
  image?: SiteImage | undefined;
}

/** A nearby city with how far it is and how many communities it lists. */
export interface PageNeighbour {
  city: PageCity;
  km: number;
  communities: number;
}

/** A page's title and meta description written by the content agents (`content.meta_tags`). */
export interface PageCopy {
  title: string;
  description: string;
}

/** Everything a city page shows. */
export interface CityPageInput {
  /** Site origin with no trailing slash, e.g. `https://seniorliving.example`. */
  origin: string;
  city: PageCity;
  communities: PageCommunity[];
  neighbours: PageNeighbour[];
  /** Median of the lowest monthly price over the state's communities (for comparison). */
  stateMedianPrice: number;
  /** JSON-LD documents to embed. */
  jsonLd: unknown[];
  /** Credit line for the city data. */
  credit: string;
  /** Title and description from the content agents; unset uses the built-in copy from the data. */
  copy?: PageCopy | undefined;
}

/** Path of a city page. */
export const cityPath = (c: Pick<PageCity, "slug" | "stateCode">): string => `/${c.stateCode.toLowerCase()}/${c.slug}/`;
/** Path of a state hub. */
export const statePath = (stateCode: string): string => `/${stateCode.toLowerCase()}/`;

const esc = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c);
/** `$4,200`. */
export const usd = (n: number): string => `$${Math.round(n).toLocaleString("en-US")}`;
const pct = (n: number): string => `${Math.round(n * 100)}%`;
const classOf = (careType: string): string => `t-${careType.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
/** A NANP number in E.164 (`+15125550142`) as people write it, `(512) 555-0142`; others as given. */
export const displayPhone = (e164: string): string => {
  const m = /^\+1(\d{3})(\d{3})(\d{4})$/.exec(e164);
  return m ? `(${m[1]}) ${m[2]}-${m[3]}` : e164;
};
/** JSON for a script element: `<` escaped so no `</script>` can end it early. */
const scriptJson = (v: unknown): string => JSON.stringify(v).replace(/</g, "\\u003c");

/** A stable small number from a string (picks sentence variants per city). */
function variant(key: string, n: number): number {
  let h = 2166136261;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619);
  return (h >>> 0) % n;
}

/** Median of `xs` (0 for none). */
export function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Facts of a city's communities, computed once for text, stats and filters. */
export function cityFacts(communities: PageCommunity[]) {
  const careCounts = new Map<string, number>();
  for (const c of communities) for (const t of c.careTypes) careCounts.set(t, (careCounts.get(t) ?? 0) + 1);
  const mix = [...careCounts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const priceByType = new Map<string, { min: number; max: number }>();
  for (const c of communities) {
    for (const p of c.prices) {
      const r = priceByType.get(p.careType);
      priceByType.set(p.careType, r ? { min: Math.min(r.min, p.min), max: Math.max(r.max, p.max) } : { ...p });
    }
  }
  const lowest = communities.map((c) => Math.min(...c.prices.map((p) => p.min)));
  return {
    count: communities.length,
    mix,
    priceByType,
    medianLowest: median(lowest),
    capacity: communities.reduce((a, c) => a + c.capacity, 0),
    newest: Math.max(...communities.map((c) => c.yearOpened)),
    oldest: Math.min(...communities.map((c) => c.yearOpened)),
  };
}

/** Price bands of the filter, by lowest monthly price. */
export const priceBands = [
  { id: "p1", label: "Under $3,000", max: 3000 },
  { id: "p2", label: "$3,000–$5,000", max: 5000 },
  { id: "p3", label: "$5,000–$7,500", max: 7500 },
  { id: "p4", label: "$7,500 and up", max: Number.POSITIVE_INFINITY },
] as const;

function bandOf(price: number): string {
  return priceBands.find((b) => price < b.max)?.id ?? "p4";
}

/** The city's introduction: sentences built from its own numbers, so every page says something else. */
export function cityIntro(input: CityPageInput): string[] {
  const { city, communities, neighbours } = input;
  const f = cityFacts(communities);
  const place = `${city.name}, ${city.stateCode}`;
  const [topType, topCount] = f.mix[0] ?? ["senior living", 0];
  const share = f.count ? topCount / f.count : 0;
  const vsState = input.stateMedianPrice ? f.medianLowest / input.stateMedianPrice - 1 : 0;
  const nearest = neighbours[0];
  const out: string[] = [];
  const opening = [
    `${place} has ${f.count} senior living ${f.count === 1 ? "community" : "communities"} in this directory, with room for about ${f.capacity.toLocaleString("en-US")} residents.`,
    `This directory lists ${f.count} ${f.count === 1 ? "community" : "communities"} in ${place}, a city of about ${city.population.toLocaleString("en-US")} people.`,
    `Families comparing senior living in ${place} can choose between ${f.count} ${f.count === 1 ? "community" : "communities"} here, together offering about ${f.capacity.toLocaleString("en-US")} apartments and beds.`,
  ];
  out.push(opening[variant(city.slug, opening.length)] as string);
  if (f.count > 0) {
    out.push(
      `${topType[0]?.toUpperCase()}${topType.slice(1)} is the most common kind of care (${pct(share)} of communities)` +
        (f.mix.length > 1
          ? `, followed by ${f.mix
              .slice(1, 3)
              .map(([t, n]) => `${t.toLowerCase()} (${n})`)
              .join(" and ")}.`
          : "."),
    );
    const cheapest = [...f.priceByType.entries()].sort((a, b) => a[1].min - b[1].min)[0];
    if (cheapest) {
      const dir =
        Math.abs(vsState) < 0.03
          ? `about the same as the ${city.stateName} median`
          : `${pct(Math.abs(vsState))} ${vsState < 0 ? "below" : "above"} the ${city.stateName} median of ${usd(input.stateMedianPrice)}`;
      out.push(
        `Starting prices have a median of ${usd(f.medianLowest)} a month, ${dir}; ${cheapest[0].toLowerCase()} starts lowest, from ${usd(cheapest[1].min)}.`,
      );
    }
    out.push(
      f.oldest === f.newest
        ? `All listed communities opened in ${f.oldest}.`
        : `The communities opened between ${f.oldest} and ${f.newest}.`,
    );
  }
  if (nearest) {
    out.push(
      `The nearest other city in the directory is ${nearest.city.name} (${Math.round(nearest.km)} km away, ${nearest.communities} ${nearest.communities === 1 ? "community" : "communities"}).`,
    );
  }
  return out;
}

function page(opts: {
  title: string;
  description: string;
  /** Absolute canonical URL (pages that are not part of the site have none). */
  canonical?: string;
  body: string;
  jsonLd: unknown[];
  pageType: string;
  city?: string;
  noindex?: boolean;
  /** Page-specific CSS appended to the shared stylesheet. */
  css?: string;
  /** Include the page-view beacon (default true; pages answered to a failed form post have none). */
  beacon?: boolean;
}): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(opts.title)}</title>
<meta name="description" content="${esc(opts.description)}">
${opts.canonical ? `<link rel="canonical" href="${esc(opts.canonical)}">` : ""}${opts.noindex ? '\n<meta name="robots" content="noindex">' : ""}
<meta property="og:type" content="website">
<meta property="og:title" content="${esc(opts.title)}">
<meta property="og:description" content="${esc(opts.description)}">
${opts.canonical ? `<meta property="og:url" content="${esc(opts.canonical)}">\n` : ""}<link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Crect width='16' height='16' rx='3' fill='%231f4e5f'/%3E%3C/svg%3E">
<meta name="theme-color" content="#1f4e5f">
<style>${STYLE}${opts.css ?? ""}</style>
${opts.jsonLd.map((d) => `<script type="application/ld+json">${scriptJson(d)}</script>`).join("\n")}
</head>
<body data-page="${esc(opts.pageType)}"${opts.city ? ` data-city="${esc(opts.city)}"` : ""}>
${opts.body}
${opts.beacon === false ? "" : `<script>${BEACON_SCRIPT}</script>\n`}</body>
</html>
`;
}

function footer(credit: string): string {
  return `<footer class="foot"><p><strong>Sample data.</strong> The communities on this site are generated for demonstration; they are not real businesses.</p><p>${esc(credit)}</p></footer>`;
}

/** What a visitor typed into the enquiry form, shown again when the server could not take it. */
export interface EnquiryFormValues {
  name: string;
  email: string;
  phone: string;
  message: string;
  community: string;
  visitorId: string;
  eventId: string;
}

/** A refused enquiry to show again: its city, what was posted and the field at fault. */
export interface EnquiryRefill {
  city: Pick<PageCity, "slug" | "name" | "stateCode">;
  values: EnquiryFormValues;
  invalid?: string;
}

/**
 * The enquiry form: a plain POST. On a city page it lists the city's communities; on the page
 * answered to a refused post it keeps the visitor's values (the community as chosen) and marks the
 * field at fault (`aria-invalid`, described by the page's error message, focused first).
 */
function enquiryForm(
  city: Pick<PageCity, "slug" | "name">,
  communities: PageCommunity[] | undefined,
  refill?: Pick<EnquiryRefill, "values" | "invalid">,
): string {
  const v = refill?.values;
  const value = (x: string | undefined) => (x ? ` value="${esc(x)}"` : "");
  const mark = (field: string) =>
    refill?.invalid === field ? ' aria-invalid="true" aria-describedby="enq-error" autofocus' : "";
  const community =
    communities === undefined
      ? `<input type="hidden" name="community"${value(v?.community)}>`
      : `<label for="enq-community">Community</label><select id="enq-community" name="community"><option value="">Any in ${esc(city.name)}</option>${communities.map((c) => `<option value="${esc(c.slug)}">${esc(c.name)}</option>`).join("")}</select>`;
  return `<section class="enquiry" id="enquire" aria-labelledby="enq-h">
<h2 id="enq-h">Ask about senior living in ${esc(city.name)}</h2>
<form method="post" action="/enquiry" data-enquiry>
<input type="hidden" name="city" value="${esc(city.slug)}">
<input type="hidden" name="event_id" value="${esc(v?.eventId ?? "")}">
<input type="hidden" name="visitor_id" value="${esc(v?.visitorId ?? "")}">
<label for="enq-name">Your name</label><input id="enq-name" name="name" autocomplete="name" required maxlength="120"${value(v?.name)}${mark("name")}>
<label for="enq-email">Email</label><input id="enq-email" name="email" type="email" autocomplete="email" required maxlength="254"${value(v?.email)}${mark("email")}>
<label for="enq-phone">Phone (optional)</label><input id="enq-phone" name="phone" type="tel" autocomplete="tel" maxlength="32"${value(v?.phone)}${mark("phone")}>
${community}
<label for="enq-msg">Question (optional)</label><textarea id="enq-msg" name="message" rows="3" maxlength="2000"${mark("message")}>${esc(v?.message ?? "")}</textarea>
<button type="submit">Send enquiry</button>
</form>
</section>`;
}

/** Displayed width of a card image (keep in step with `.c .head img` in the stylesheet). */
const CARD_IMAGE_SIZES = "(max-width: 479px) 96px, 128px";

/**
 * A card's image. Lazy for every card: the images are small and never the largest paint, and on a
 * phone even the first card is below the first screen, so none of them competes with the text.
 */
function cardImage(image: SiteImage): string {
  return `<img src="${esc(image.src)}" srcset="${esc(image.srcset)}" sizes="${CARD_IMAGE_SIZES}" width="${image.width}" height="${image.height}" alt="${esc(image.alt)}" loading="lazy" decoding="async">`;
}

function communityCard(c: PageCommunity): string {
  const lowest = Math.min(...c.prices.map((p) => p.min));
  const classes = ["c", ...c.careTypes.map(classOf), bandOf(lowest)].join(" ");
  const prices = c.prices.map((p) => `<li>${esc(p.careType)}: ${usd(p.min)}–${usd(p.max)} / month</li>`).join("");
  return `<li class="${classes}" id="${esc(c.slug)}">
<article>
<div class="head"><div>
<h3>${esc(c.name)}</h3>
<p class="addr">${esc(c.street)}, ${esc(c.postalCode)} · <a href="tel:${esc(c.phone)}">${esc(displayPhone(c.phone))}</a></p>
</div>${c.image ? cardImage(c.image) : ""}</div>
<p class="care">${c.careTypes.map((t) => `<span>${esc(t)}</span>`).join("")}</p>
<ul class="prices">${prices}</ul>
<p class="meta">${c.capacity} residents · opened ${c.yearOpened}${c.amenities.length ? ` · ${esc(c.amenities.slice(0, 4).join(", "))}` : ""}</p>
<p><a class="cta" href="#enquire">Ask about ${esc(c.name)}</a></p>
</article>
</li>`;
}

/** A city landing page. */
export function renderCityPage(input: CityPageInput): string {
  const { city, communities, neighbours, origin } = input;
  const f = cityFacts(communities);
  const place = `${city.name}, ${city.stateCode}`;
  const careTypes = f.mix.map(([t]) => t);
  // Filters without JavaScript: the radio buttons are siblings placed before the fieldsets and the
  // list, so `#id:checked ~ …` rules can hide cards and highlight the chosen label.
  const careIds = careTypes.map((t) => ({ id: `care-${classOf(t)}`, cls: classOf(t), label: t }));
  const priceIds = priceBands.map((b) => ({ id: `price-${b.id}`, cls: b.id, label: b.label }));
  const radios = [
    `<input type="radio" name="care" id="care-all" checked>`,
    ...careIds.map((c) => `<input type="radio" name="care" id="${c.id}">`),
    `<input type="radio" name="price" id="price-all" checked>`,
    ...priceIds.map((c) => `<input type="radio" name="price" id="${c.id}">`),
  ].join("");
  const labels = (all: string, opts: typeof careIds) =>
    [`<label for="${all}">All</label>`, ...opts.map((o) => `<label for="${o.id}">${esc(o.label)}</label>`)].join("");
  const filters = `<fieldset class="filters"><legend>Care type</legend>${labels("care-all", careIds)}</fieldset>
<fieldset class="filters"><legend>Starting price</legend>${labels("price-all", priceIds)}</fieldset>`;
  const all = [{ id: "care-all" }, ...careIds, { id: "price-all" }, ...priceIds];
  const filterCss = [
    ...[...careIds, ...priceIds].map((o) => `#${o.id}:checked~.list .c:not(.${o.cls}){display:none}`),
    `${all.map((o) => `#${o.id}:checked~.filters label[for=${o.id}]`).join(",")}{background:var(--accent);color:#fff;border-color:var(--accent)}`,
    `${all.map((o) => `#${o.id}:focus-visible~.filters label[for=${o.id}]`).join(",")}{outline:3px solid #f0b429;outline-offset:2px}`,
  ].join("");
  // The first paragraph leads; the rest follows the list, so the communities come first on a phone.
  const [lead = "", ...more] = cityIntro(input);
  const body = `<header class="top"><a class="brand" href="/">Senior Living Directory</a></header>
<main>
<nav aria-label="Breadcrumb" class="crumbs"><a href="/">Home</a> › <a href="${statePath(city.stateCode)}">${esc(city.stateName)}</a> › <span aria-current="page">${esc(city.name)}</span></nav>
<h1>Senior living in ${esc(place)}</h1>
<p>${esc(lead)}</p>
<ul class="stats">
<li><strong>${f.count}</strong> communities</li>
<li><strong>${usd(f.medianLowest)}</strong> median starting price</li>
${[...f.priceByType.entries()].map(([t, r]) => `<li>${esc(t)}: <strong>${usd(r.min)}–${usd(r.max)}</strong></li>`).join("\n")}
</ul>
<section aria-labelledby="list-h">
<h2 id="list-h">Communities in ${esc(city.name)}</h2>
<div class="filterable">
${radios}
${filters}
<ol class="list">
${communities.map(communityCard).join("\n")}
</ol>
</div>
</section>
${
  more.length > 0
    ? `<section aria-labelledby="about-h">
<h2 id="about-h">About senior living in ${esc(city.name)}</h2>
${more.map((p) => `<p>${esc(p)}</p>`).join("\n")}
</section>
`
    : ""
}${enquiryForm(city, communities)}
<section aria-labelledby="near-h">
<h2 id="near-h">Nearby cities</h2>
<ul class="near">${neighbours
    .map(
      (n) =>
        `<li><a href="${cityPath(n.city)}">${esc(n.city.name)}, ${esc(n.city.stateCode)}</a> · ${Math.round(n.km)} km · ${n.communities} ${n.communities === 1 ? "community" : "communities"}</li>`,
    )
    .join("")}</ul>
<p><a href="${statePath(city.stateCode)}">All cities in ${esc(city.stateName)}</a> · <a href="/">All states</a></p>
</section>
</main>
${footer(input.credit)}`;
  const [topType] = f.mix[0] ?? ["senior living"];
  return page({
    title: input.copy?.title ?? `Senior Living in ${place}: ${f.count} Communities Compared`,
    description:
      input.copy?.description ??
      `Compare ${f.count} senior living communities in ${place}: ${topType.toLowerCase()} and more, starting prices from ${usd(Math.min(...[...f.priceByType.values()].map((r) => r.min)))} a month. Sample data.`,
    canonical: `${origin}${cityPath(city)}`,
    body,
    jsonLd: input.jsonLd,
    pageType: "city",
    city: city.slug,
    css: filterCss,
  });
}

/** A state hub: every city of the state with its count. */
export function renderStatePage(input: {
  origin: string;
  stateCode: string;
  stateName: string;
  cities: Array<{ city: PageCity; communities: number }>;
  jsonLd: unknown[];
  credit: string;
}): string {
  const total = input.cities.reduce((a, c) => a + c.communities, 0);
  const body = `<header class="top"><a class="brand" href="/">Senior Living Directory</a></header>
<main>
<nav aria-label="Breadcrumb" class="crumbs"><a href="/">Home</a> › <span aria-current="page">${esc(input.stateName)}</span></nav>
<h1>Senior living in ${esc(input.stateName)}</h1>
<p>${total} communities in ${input.cities.length} ${input.cities.length === 1 ? "city" : "cities"} of ${esc(input.stateName)}.</p>
<ul class="cities">${input.cities
    .map(
      (c) =>
        `<li><a href="${cityPath(c.city)}">${esc(c.city.name)}</a> <span>${c.communities} ${c.communities === 1 ? "community" : "communities"}</span></li>`,
    )
    .join("")}</ul>
</main>
${footer(input.credit)}`;
  return page({
    title: `Senior Living in ${input.stateName}: ${input.cities.length} Cities`,
    description: `Senior living communities in ${input.cities.length} cities of ${input.stateName}, ${total} in all. Sample data.`,
    canonical: `${input.origin}${statePath(input.stateCode)}`,
    body,
    jsonLd: input.jsonLd,
    pageType: "state",
  });
}

/** The national index: every state with its counts. */
export function renderIndexPage(input: {
  origin: string;
  states: Array<{ stateCode: string; stateName: string; cities: number; communities: number }>;
  jsonLd: unknown[];
  credit: string;
}): string {
  const cities = input.states.reduce((a, s) => a + s.cities, 0);
  const communities = input.states.reduce((a, s) => a + s.communities, 0);
  const body = `<header class="top"><a class="brand" href="/">Senior Living Directory</a></header>
<main>
<h1>Senior living across the United States</h1>
<p>${communities.toLocaleString("en-US")} communities in ${cities} cities across ${input.states.length} states and districts.</p>
<ul class="cities">${input.states
    .map(
      (s) =>
        `<li><a href="${statePath(s.stateCode)}">${esc(s.stateName)}</a> <span>${s.cities} cities · ${s.communities} communities</span></li>`,
    )
    .join("")}</ul>
</main>
${footer(input.credit)}`;
  return page({
    title: "Senior Living Directory: Communities in Every State",
    description: `Compare ${communities.toLocaleString("en-US")} senior living communities in ${cities} US cities. Sample data.`,
    canonical: `${input.origin}/`,
    body,
    jsonLd: input.jsonLd,
    pageType: "index",
  });
}

/** The page an enquiry posted without JavaScript lands on. */
export function renderThankYouPage(input: { origin: string; city?: PageCity; credit: string }): string {
  const back = input.city
    ? `<a href="${cityPath(input.city)}">Back to ${esc(input.city.name)}</a>`
    : `<a href="/">Home</a>`;
  const body = `<header class="top"><a class="brand" href="/">Senior Living Directory</a></header>
<main><h1>Thank you</h1><p>We received your enquiry and will be in touch soon.</p><p>${back}</p></main>
${footer(input.credit)}`;
  return page({
    title: "Thank you for your enquiry",
    description: "Your enquiry was received.",
    canonical: `${input.origin}/enquiry/thanks/`,
    body,
    jsonLd: [],
    pageType: "thanks",
    noindex: true,
  });
}

/**
 * The page a browser gets when the server cannot take an enquiry (answered with the error's status):
 * what went wrong in words and, when the city is known, the form again with the visitor's values so
 * nothing typed is lost. Not part of the site: no canonical, no index, no beacon.
 */
export function renderFormErrorPage(input: {
  heading: string;
  message: string;
  credit: string;
  form?: EnquiryRefill;
}): string {
  const f = input.form;
  const back = f ? `<a href="${cityPath(f.city)}">Back to ${esc(f.city.name)}</a>` : `<a href="/">Home</a>`;
  const body = `<header class="top"><a class="brand" href="/">Senior Living Directory</a></header>
<main><h1>${esc(input.heading)}</h1><p role="alert" id="enq-error">${esc(input.message)}</p>
${f ? enquiryForm(f.city, undefined, f) : ""}
<p>${back}</p></main>
${footer(input.credit)}`;
  return page({
    title: input.heading,
    description: input.message,
    body,
    jsonLd: [],
    pageType: "error",
    noindex: true,
    beacon: false,
    css: "[role=alert]{color:#b3261e;font-weight:700}.enquiry [aria-invalid=true]{border:2px solid #b3261e}",
  });
}
