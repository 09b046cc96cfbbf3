/**
 * The technical audit's rules: each turns crawl facts into one finding with the affected URLs,
 * a reason and a concrete fix. Findings are ordered by priority = severity weight × share of
 * recorded URLs affected (critical 40, warning 15, notice 3), and the health score is 100 minus
 * the sum of those priorities, floored at 0 (a finding on every page costs its full weight; a
 * site with any finding scores below 100).
 *
 * Page rules apply to 2xx HTML documents; canonical-missing and duplicate rules only to pages
 * that want to be indexed (not noindex). Thresholds: title 10–60 characters, meta description
 * 70–160 characters (what search result snippets show before truncating), counted in Unicode
 * code points after collapsing whitespace.
 */
import { create } from "@bufbuild/protobuf";
import {
  type AuditFinding,
  AuditFindingSchema,
  DuplicateKind,
  FindingSeverity,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";
import type { PageRecord } from "./audit-crawl.ts";

/** Shortest title that describes a page. */
export const TITLE_MIN_CHARS = 10;
/** Longest title shown in full in search results. */
export const TITLE_MAX_CHARS = 60;
/** Shortest useful meta description. */
export const DESCRIPTION_MIN_CHARS = 70;
/** Longest meta description shown in full in search results. */
export const DESCRIPTION_MAX_CHARS = 160;

/** Priority weight of each severity. */
export const SEVERITY_WEIGHT: Readonly<Record<number, number>> = {
  [FindingSeverity.CRITICAL]: 40,
  [FindingSeverity.WARNING]: 15,
  [FindingSeverity.NOTICE]: 3,
};

interface Rule {
  severity: FindingSeverity;
  title: string;
  description: string;
  recommendation: string;
}

const { CRITICAL, WARNING, NOTICE } = FindingSeverity;

/** Every rule, by id. */
export const RULES: Readonly<Record<string, Rule>> = {
  "status.server-error": {
    severity: CRITICAL,
    title: "URLs answer with a 5xx server error",
    description:
      "Search engines cannot index a page that fails, and repeated 5xx answers slow down crawling of the whole site.",
    recommendation:
      "Fix the server error (check the application log for these URLs) so they answer 200, or remove the links to them.",
  },
  "status.client-error": {
    severity: CRITICAL,
    title: "Linked URLs answer with a 4xx client error",
    description: "Visitors and crawlers following internal links reach an error page, and the link equity is lost.",
    recommendation:
      "Restore the page, redirect the URL with a 301 to its closest replacement, or update the links pointing to it.",
  },
  "status.fetch-failed": {
    severity: CRITICAL,
    title: "URLs could not be fetched (network error or timeout)",
    description: "A page that does not answer in time is treated like a server error by crawlers.",
    recommendation: "Make these URLs answer reliably within a few seconds (check DNS, TLS and server load).",
  },
  "links.broken-internal": {
    severity: CRITICAL,
    title: "Pages link to broken internal URLs",
    description: "Broken internal links waste crawl budget, lose link equity and frustrate visitors.",
    recommendation:
      "Update or remove each broken link listed in broken_links for these pages (source_url → target_url).",
  },
  "redirect.loop": {
    severity: CRITICAL,
    title: "URLs redirect in a loop or through too many hops",
    description: "Browsers and crawlers give up, so the content behind these URLs is unreachable.",
    recommendation: "Make each URL answer 200 or redirect once, with a 301, straight to a URL that answers 200.",
  },
  "redirect.broken": {
    severity: CRITICAL,
    title: "URLs redirect to an error",
    description: "The redirect leads visitors and crawlers to a page that fails, so it passes nothing on.",
    recommendation: "Point the redirect at a live page that answers 200, or restore its target.",
  },
  "links.broken-external": {
    severity: WARNING,
    title: "Pages link to broken external URLs",
    description: "Links to dead pages on other sites look neglected to visitors and quality raters.",
    recommendation: "Replace each broken external link listed in broken_links with a working source, or remove it.",
  },
  "images.broken": {
    severity: WARNING,
    title: "Pages show images that fail to load",
    description: "Broken images hurt the page for visitors and cannot appear in image search.",
    recommendation: "Fix or replace each failing image source listed in broken_links for these pages.",
  },
  "redirect.chain": {
    severity: WARNING,
    title: "URLs redirect through a chain of two or more hops",
    description: "Every hop adds latency, and crawlers stop following long chains.",
    recommendation: "Redirect each URL in one hop straight to the final URL of its chain, and link to the final URL.",
  },
  "indexing.noindex": {
    severity: WARNING,
    title: "Pages are excluded from search results by noindex",
    description: "A robots meta tag or X-Robots-Tag header says noindex, so these pages cannot rank.",
    recommendation:
      "Remove the noindex directive from pages that should rank; for pages that should not, keep it and leave them out of the sitemap.",
  },
  "canonical.other-host": {
    severity: WARNING,
    title: "Canonical URLs point to another host",
    description: "Search engines may drop these pages in favour of the other site's URL.",
    recommendation:
      "Point the canonical link at the page's own URL on this site, unless the page really is a copy of the other site's page.",
  },
  "canonical.target-not-ok": {
    severity: WARNING,
    title: "Canonical URLs point to pages that redirect, fail, are noindex or are blocked",
    description:
      "A canonical target that is not an indexable 200 page sends conflicting signals, and search engines ignore it.",
    recommendation: "Point the canonical link at the final, indexable URL that answers 200.",
  },
  "canonical.multiple": {
    severity: WARNING,
    title: "Pages declare conflicting canonical URLs",
    description: "With more than one canonical target, search engines ignore them all.",
    recommendation: "Keep a single canonical link (in the HTML head or the Link header, not different ones in both).",
  },
  "title.missing": {
    severity: WARNING,
    title: "Pages have no title",
    description: "The title is the headline of the search result and a strong relevance signal.",
    recommendation: "Add a unique, descriptive <title> of 10–60 characters to each page.",
  },
  "title.duplicate": {
    severity: WARNING,
    title: "Pages share the same title",
    description: "Identical titles make pages compete with each other and look the same in search results.",
    recommendation: "Give each page a unique title that names what sets it apart (see duplicates of kind TITLE).",
  },
  "meta-description.missing": {
    severity: WARNING,
    title: "Pages have no meta description",
    description: "Without one, search engines pick a snippet from the page, which often reads poorly.",
    recommendation:
      "Add a unique meta description of 70–160 characters that summarises the page and invites the click.",
  },
  "meta-description.duplicate": {
    severity: WARNING,
    title: "Pages share the same meta description",
    description: "Identical snippets make different pages look interchangeable in search results.",
    recommendation: "Write a distinct meta description for each page (see duplicates of kind META_DESCRIPTION).",
  },
  "h1.missing": {
    severity: WARNING,
    title: "Pages have no h1 heading",
    description: "The h1 tells visitors and search engines what the page is about.",
    recommendation: "Add one h1 that states the page's topic.",
  },
  "images.missing-alt": {
    severity: WARNING,
    title: "Images have no alt attribute",
    description: "Screen readers and image search rely on alt text to understand an image.",
    recommendation:
      'Add alt text describing each image listed in the page\'s images_missing_alt, or alt="" for purely decorative images.',
  },
  "security.mixed-content": {
    severity: WARNING,
    title: "HTTPS pages load resources over plain HTTP",
    description: "Browsers block or flag mixed content, breaking the page and its security indicator.",
    recommendation: "Load every image, script, style sheet and frame over https (or with a protocol-relative URL).",
  },
  "content.exact-duplicate": {
    severity: WARNING,
    title: "Pages have identical content",
    description: "Search engines index one copy and filter the others, splitting links between them.",
    recommendation:
      "Merge the copies into one page and 301-redirect the others to it, or point their canonical at the preferred copy.",
  },
  "content.near-duplicate": {
    severity: WARNING,
    title: "Pages have nearly identical content",
    description: "Pages whose text differs only slightly are treated as duplicates and may be filtered from results.",
    recommendation:
      "Make each page substantially distinct (local facts, specific details), or consolidate them with a canonical or a 301.",
  },
  "redirect.temporary": {
    severity: NOTICE,
    title: "URLs use temporary redirects",
    description: "A 302, 303 or 307 tells search engines the move is temporary, so the old URL stays indexed.",
    recommendation: "Use a 301 or 308 when the move is permanent.",
  },
  "redirect.internal-link": {
    severity: NOTICE,
    title: "Pages link to internal URLs that redirect",
    description: "Each redirected link costs an extra request for visitors and crawlers.",
    recommendation: "Change these links to point directly at the final URL of the redirect.",
  },
  "robots.blocked": {
    severity: NOTICE,
    title: "Linked URLs are blocked by robots.txt",
    description: "Blocked URLs cannot be crawled, yet may still be indexed from links, without a snippet.",
    recommendation:
      "If these pages should be found, allow them in robots.txt; if not, stop linking to them or serve noindex instead of blocking.",
  },
  "indexing.nofollow": {
    severity: NOTICE,
    title: "Pages tell crawlers not to follow their links",
    description: "A nofollow robots directive stops link equity flowing to the pages they link to.",
    recommendation:
      "Remove nofollow from the robots meta tag or X-Robots-Tag unless the page's links really must not be followed.",
  },
  "canonical.missing": {
    severity: NOTICE,
    title: "Pages have no canonical URL",
    description:
      "Without a canonical, URL variants (parameters, trailing slashes, http/https) can be indexed separately.",
    recommendation: 'Add <link rel="canonical" href="…"> with the page\'s own absolute URL.',
  },
  "canonical.relative": {
    severity: NOTICE,
    title: "Canonical URLs are relative",
    description: "Relative canonicals are easy to get wrong on mirrors and staging hosts.",
    recommendation: "Write the canonical href as an absolute URL including scheme and host.",
  },
  "title.too-long": {
    severity: NOTICE,
    title: `Titles are longer than ${TITLE_MAX_CHARS} characters`,
    description: "Search results truncate long titles, hiding their end.",
    recommendation: `Shorten the title to at most ${TITLE_MAX_CHARS} characters, with the important words first.`,
  },
  "title.too-short": {
    severity: NOTICE,
    title: `Titles are shorter than ${TITLE_MIN_CHARS} characters`,
    description: "A very short title says little about the page.",
    recommendation: `Write a descriptive title of ${TITLE_MIN_CHARS}–${TITLE_MAX_CHARS} characters.`,
  },
  "title.multiple": {
    severity: NOTICE,
    title: "Pages have more than one title element",
    description: "Only the first title counts; the others are a template error.",
    recommendation: "Keep a single <title> element in the head.",
  },
  "meta-description.too-long": {
    severity: NOTICE,
    title: `Meta descriptions are longer than ${DESCRIPTION_MAX_CHARS} characters`,
    description: "Search results truncate long descriptions.",
    recommendation: `Shorten the meta description to at most ${DESCRIPTION_MAX_CHARS} characters.`,
  },
  "meta-description.too-short": {
    severity: NOTICE,
    title: `Meta descriptions are shorter than ${DESCRIPTION_MIN_CHARS} characters`,
    description: "A short description leaves room search engines fill with text of their choice.",
    recommendation: `Write a meta description of ${DESCRIPTION_MIN_CHARS}–${DESCRIPTION_MAX_CHARS} characters.`,
  },
  "h1.multiple": {
    severity: NOTICE,
    title: "Pages have more than one h1 heading",
    description: "Several h1s blur what the page's main topic is.",
    recommendation: "Keep one h1 for the page topic and use h2–h6 for sections.",
  },
  "headings.skipped-level": {
    severity: NOTICE,
    title: "Heading levels are skipped",
    description: "Jumping, for example, from h1 to h3 breaks the outline screen readers and crawlers use.",
    recommendation: "Use heading levels in order (h1, then h2, then h3) without skipping a level.",
  },
};

/** A reference (link or image) whose target failed. */
export interface FailedReference {
  /** Page holding the reference. */
  readonly sourceUrl: string;
  /** True for a link, false for an image. */
  readonly isLink: boolean;
  /** True when the target is on the site's hosts. */
  readonly internal: boolean;
}

/** A group of pages sharing a title, a description or content. */
export interface PageGroup {
  /** What they share. */
  readonly kind: DuplicateKind;
  /** The pages. */
  readonly urls: readonly string[];
}

/** Everything the rules read. */
export interface RuleInput {
  /** Recorded URLs. */
  readonly pages: readonly PageRecord[];
  /** Hosts of the site. */
  readonly siteHosts: ReadonlySet<string>;
  /** Failed links and images. */
  readonly failedReferences: readonly FailedReference[];
  /** Duplicate groups. */
  readonly duplicates: readonly PageGroup[];
  /** Most URLs listed per finding. */
  readonly maxUrlsPerFinding: number;
}

const chars = (s: string): number => [...s].length;

/** True for a page that answered 200 at its own URL, is not noindex and is its own canonical. */
export function isIndexable(p: PageRecord, noindex: boolean, canonical: string): boolean {
  const f = p.fetched;
  return (
    f !== undefined && f.status === 200 && f.chain.length === 0 && !noindex && (canonical === "" || canonical === p.url)
  );
}

/** Applies every rule; returns findings in fix order and the health score. */
export function evaluateRules(input: RuleInput): { findings: AuditFinding[]; healthScore: number } {
  const affected = new Map<string, Set<string>>();
  const flag = (ruleId: string, url: string): void => {
    const set = affected.get(ruleId) ?? new Set<string>();
    set.add(url);
    affected.set(ruleId, set);
  };
  const byUrl = new Map(input.pages.map((p) => [p.url, p]));

  for (const p of input.pages) {
    const f = p.fetched;
    if (p.blocked) {
      // Blocked URLs are only ever recorded because a page linked to them (or the start URL).
      flag("robots.blocked", p.url);
      continue;
    }
    if (f === undefined) continue;
    if (f.status === 0) flag("status.fetch-failed", p.url);
    else if (f.status >= 500) flag("status.server-error", p.url);
    else if (f.status >= 400) flag("status.client-error", p.url);
    if (f.chain.length > 0) {
      if (f.redirectProblem === "loop" || f.redirectProblem === "too-many") flag("redirect.loop", p.url);
      else if (f.redirectProblem === "" && (f.finalStatus === 0 || f.finalStatus >= 400))
        flag("redirect.broken", p.url);
      if (f.chain.length >= 2 && f.redirectProblem !== "loop") flag("redirect.chain", p.url);
      if ([302, 303, 307].includes(f.status)) flag("redirect.temporary", p.url);
    }
    const facts = p.facts;
    if (facts === undefined) continue;
    const u = p.url;
    if (facts.noindex) flag("indexing.noindex", u);
    if (facts.nofollow) flag("indexing.nofollow", u);
    if (facts.titleCount === 0 || facts.title === "") flag("title.missing", u);
    else if (chars(facts.title) > TITLE_MAX_CHARS) flag("title.too-long", u);
    else if (chars(facts.title) < TITLE_MIN_CHARS) flag("title.too-short", u);
    if (facts.titleCount > 1) flag("title.multiple", u);
    if (facts.metaDescription === "") flag("meta-description.missing", u);
    else if (chars(facts.metaDescription) > DESCRIPTION_MAX_CHARS) flag("meta-description.too-long", u);
    else if (chars(facts.metaDescription) < DESCRIPTION_MIN_CHARS) flag("meta-description.too-short", u);
    const h1s = facts.headings.filter((h) => h.level === 1).length;
    if (h1s === 0) flag("h1.missing", u);
    if (h1s > 1) flag("h1.multiple", u);
    for (let i = 1; i < facts.headings.length; i++) {
      if ((facts.headings[i]?.level ?? 0) > (facts.headings[i - 1]?.level ?? 0) + 1) {
        flag("headings.skipped-level", u);
        break;
      }
    }
    if (facts.images.some((img) => img.alt === undefined)) flag("images.missing-alt", u);
    if (facts.insecureResources.length > 0) flag("security.mixed-content", u);
    const canonical = facts.canonicals[0];
    if (canonical === undefined) {
      if (!facts.noindex) flag("canonical.missing", u);
    } else {
      if (facts.canonicals.length > 1) flag("canonical.multiple", u);
      if (facts.canonicalRelative) flag("canonical.relative", u);
      if (!input.siteHosts.has(new URL(canonical).host)) flag("canonical.other-host", u);
      else if (canonical !== u) {
        const target = byUrl.get(canonical);
        const tf = target?.fetched;
        const bad =
          target !== undefined &&
          (target.blocked ||
            (tf !== undefined && (tf.status !== 200 || tf.chain.length > 0)) ||
            target.facts?.noindex === true);
        if (bad) flag("canonical.target-not-ok", u);
      }
    }
    for (const l of facts.links) {
      const target = byUrl.get(l.url);
      if (
        target?.fetched !== undefined &&
        target.fetched.chain.length > 0 &&
        input.siteHosts.has(new URL(l.url).host)
      ) {
        flag("redirect.internal-link", u);
        break;
      }
    }
  }
  for (const r of input.failedReferences) {
    flag(r.isLink ? (r.internal ? "links.broken-internal" : "links.broken-external") : "images.broken", r.sourceUrl);
  }
  const duplicateRule: Partial<Record<DuplicateKind, string>> = {
    [DuplicateKind.TITLE]: "title.duplicate",
    [DuplicateKind.META_DESCRIPTION]: "meta-description.duplicate",
    [DuplicateKind.EXACT_CONTENT]: "content.exact-duplicate",
    [DuplicateKind.NEAR_CONTENT]: "content.near-duplicate",
  };
  for (const g of input.duplicates) {
    const rule = duplicateRule[g.kind];
    if (rule !== undefined) for (const u of g.urls) flag(rule, u);
  }

  const denominator = Math.max(1, input.pages.length);
  const findings: AuditFinding[] = [];
  for (const [ruleId, urls] of affected) {
    const rule = RULES[ruleId] as Rule;
    const share = Math.min(1, urls.size / denominator);
    findings.push(
      create(AuditFindingSchema, {
        ruleId,
        severity: rule.severity,
        title: rule.title,
        description: rule.description,
        recommendation: rule.recommendation,
        affectedUrls: [...urls].sort().slice(0, input.maxUrlsPerFinding),
        affectedCount: urls.size,
        priorityScore: (SEVERITY_WEIGHT[rule.severity] ?? 0) * share,
      }),
    );
  }
  findings.sort(
    (a, b) =>
      b.priorityScore - a.priorityScore ||
      a.severity - b.severity ||
      b.affectedCount - a.affectedCount ||
      a.ruleId.localeCompare(b.ruleId),
  );
  findings.forEach((f, i) => {
    f.priorityRank = i + 1;
  });
  const penalty = findings.reduce((sum, f) => sum + f.priorityScore, 0);
  // Rounded to 2 decimals, but never 100 while there is something to fix.
  let healthScore = Math.max(0, Math.round((100 - penalty) * 100) / 100);
  if (findings.length > 0) healthScore = Math.min(healthScore, 99.99);
  return { findings, healthScore };
}
