/**
 * robots.txt per RFC 9309: rendering typed groups, parsing a file back into groups (with the line
 * of every rule), answering "may this crawler fetch this URL" and adding `Sitemap:` lines.
 *
 * Matching is robots-parser's (RFC 9309: longest matching rule wins, allow wins ties, `*` and `$`
 * patterns, percent-encoding normalised). We choose the group ourselves, because robots-parser
 * reduces a full User-Agent string to its first word ("Mozilla") and falls back to `*` for a group
 * that has no rule lines, where RFC 9309 applies the empty group (everything allowed). The parser
 * below follows robots-parser's grouping line for line, so its line numbers and our groups agree.
 */
import { create } from "@bufbuild/protobuf";
import robotsParserModule from "robots-parser";
import {
  type RobotsGroup,
  RobotsGroupSchema,
  type RobotsRule,
  RobotsRuleSchema,
  RobotsRuleType,
  type RobotsTxtSpec,
  RobotsTxtSpecSchema,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";

// The package is CommonJS: Node's default import is its `module.exports` (the function), while its
// typings describe an ES default export.
const robotsParser = robotsParserModule as unknown as typeof robotsParserModule.default;

/** RFC 9309 §2.5: crawlers must parse at least 500 kibibytes; anything after may be ignored. */
export const ROBOTS_TXT_MAX_BYTES = 500 * 1024;

const productToken = /^(\*|[A-Za-z_-]+)$/;
const rulePath = /^([/*][^\s#]*)?$/;

/** A parsed robots.txt. */
export interface ParsedRobotsTxt {
  /** Groups in file order and every `Sitemap:` URL. */
  readonly spec: RobotsTxtSpec;
  /** Allow and disallow rules by 1-based line. */
  readonly rulesByLine: ReadonlyMap<number, RobotsRule>;
  /** Product tokens named by the file, lower-cased (robots-parser's key) → spelling as first written. */
  readonly agents: ReadonlyMap<string, string>;
  /** Tokens (lower-cased) whose groups have at least one rule or crawl-delay line. */
  readonly agentsWithLines: ReadonlySet<string>;
  /** Lines ignored and other notes. */
  readonly warnings: string[];
}

/** The answer for one URL and crawler. */
export interface RobotsVerdict {
  /** True when the crawler may fetch the URL. */
  readonly allowed: boolean;
  /** Token of the group that applied as written in the file; empty when none applies. */
  readonly matchedUserAgent: string;
  /** The rule that decided; undefined when none matched. */
  readonly matchedRule: RobotsRule | undefined;
  /** 1-based line of that rule; 0 when none matched. */
  readonly matchedLine: number;
}

/** Answers whether a crawler may fetch a URL; undefined when the URL is not on the file's origin. */
export type RobotsMatcher = (url: string, userAgent: string) => RobotsVerdict | undefined;

function formatNumber(n: number): string {
  // Up to millisecond precision, no exponent, no trailing zeros.
  return String(Math.round(n * 1000) / 1000);
}

/** Percent-encodes non-ASCII characters (RFC 9309 §2.2.2 compares percent-encoded octets). */
function encodeNonAscii(path: string, field: string): string {
  try {
    return path.replace(/[\u0080-\uffff]+/g, (s) => encodeURIComponent(s));
  } catch {
    throw new InvalidInputError(field, "contains a lone UTF-16 surrogate");
  }
}

/** Checks an absolute http(s) URL and returns it normalised. */
export function absoluteHttpUrl(value: string, field: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidInputError(field, `"${value}" is not an absolute URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new InvalidInputError(field, `"${value}" must be an http or https URL`);
  }
  return url;
}

/**
 * Renders typed groups into robots.txt text. `field` names the spec in errors, for example `spec`.
 * Every line the file gets is one the spec asked for, so nothing in a value can start a new line.
 */
export function renderRobotsTxt(spec: RobotsTxtSpec, field = "spec"): string {
  const blocks: string[] = [];
  spec.groups.forEach((g, gi) => {
    const at = `${field}.groups[${gi}]`;
    if (g.userAgents.length === 0) throw new InvalidInputError(`${at}.user_agents`, "needs at least one user agent");
    const lines: string[] = [];
    g.userAgents.forEach((ua, ui) => {
      if (!productToken.test(ua)) {
        throw new InvalidInputError(
          `${at}.user_agents[${ui}]`,
          `"${ua}" is not a product token (letters, "_" and "-", or "*")`,
        );
      }
      lines.push(`User-agent: ${ua}`);
    });
    if (!Number.isFinite(g.crawlDelaySeconds) || g.crawlDelaySeconds < 0) {
      throw new InvalidInputError(`${at}.crawl_delay_seconds`, "must be a number of seconds, 0 or more");
    }
    if (g.crawlDelaySeconds > 0) lines.push(`Crawl-delay: ${formatNumber(g.crawlDelaySeconds)}`);
    g.rules.forEach((r, ri) => {
      const rf = `${at}.rules[${ri}]`;
      if (r.type !== RobotsRuleType.ALLOW && r.type !== RobotsRuleType.DISALLOW) {
        throw new InvalidInputError(`${rf}.type`, "must be ROBOTS_RULE_TYPE_ALLOW or ROBOTS_RULE_TYPE_DISALLOW");
      }
      if (!rulePath.test(r.path)) {
        throw new InvalidInputError(
          `${rf}.path`,
          `"${r.path}" must start with "/" or "*" and contain no whitespace or "#"`,
        );
      }
      const path = encodeNonAscii(r.path, `${rf}.path`);
      lines.push(`${r.type === RobotsRuleType.ALLOW ? "Allow" : "Disallow"}:${path === "" ? "" : ` ${path}`}`);
    });
    // A group without rules still needs a rule line: otherwise the next group's user-agent lines
    // would join this group (RFC 9309 §2.1: consecutive user-agent lines form one group).
    if (g.rules.length === 0) lines.push("Disallow:");
    blocks.push(lines.join("\n"));
  });
  if (spec.sitemaps.length > 0) {
    blocks.push(
      spec.sitemaps.map((s, si) => `Sitemap: ${absoluteHttpUrl(s, `${field}.sitemaps[${si}]`).href}`).join("\n"),
    );
  }
  return blocks.length === 0 ? "" : `${blocks.join("\n\n")}\n`;
}

/** robots-parser's key for a user-agent value: lower-cased, version (`/2.1`) dropped. */
function agentKey(value: string): string {
  const slash = value.indexOf("/");
  return (slash >= 0 ? value.slice(0, slash) : value).trim().toLowerCase();
}

function quote(s: string): string {
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 57)}...` : s);
}

/** Parses robots.txt text into groups, following robots-parser's grouping line for line. */
export function parseRobotsTxt(content: string): ParsedRobotsTxt {
  const groups: { userAgents: string[]; rules: RobotsRule[]; crawlDelaySeconds: number }[] = [];
  const sitemaps: string[] = [];
  const rulesByLine = new Map<number, RobotsRule>();
  const agents = new Map<string, string>();
  const agentsWithLines = new Set<string>();
  const warnings: string[] = [];
  let current: (typeof groups)[number] | undefined;
  let inAgentLines = false;
  const lines = content.split(/\r\n|\r|\n/);
  for (let i = 0; i < lines.length; i++) {
    const n = i + 1;
    const raw = lines[i] as string;
    const hash = raw.indexOf("#");
    const text = hash >= 0 ? raw.slice(0, hash) : raw;
    const colon = text.indexOf(":");
    if (colon < 0) {
      if (text.trim() !== "") warnings.push(`line ${n}: ${quote(text.trim())} has no ":"; ignored`);
      continue;
    }
    const key = text.slice(0, colon).trim().toLowerCase();
    const value = text.slice(colon + 1).trim();
    if (key === "") {
      warnings.push(`line ${n}: no directive before ":"; ignored`);
      continue;
    }
    switch (key) {
      case "user-agent": {
        if (!inAgentLines || current === undefined) {
          current = { userAgents: [], rules: [], crawlDelaySeconds: 0 };
          groups.push(current);
        }
        if (value === "") {
          warnings.push(`line ${n}: empty user-agent; ignored`);
          break;
        }
        const slash = value.indexOf("/");
        const token = (slash >= 0 ? value.slice(0, slash) : value).trim();
        if (!productToken.test(token)) {
          warnings.push(
            `line ${n}: user-agent ${quote(value)} is not a product token (letters, "_" and "-"); crawlers may never match it`,
          );
        } else if (slash >= 0) {
          warnings.push(`line ${n}: user-agent ${quote(value)} carries a version; it is matched as "${token}"`);
        }
        current.userAgents.push(token);
        const k = agentKey(value);
        if (!agents.has(k)) agents.set(k, token);
        break;
      }
      case "allow":
      case "disallow": {
        if (current === undefined || current.userAgents.length === 0) {
          warnings.push(`line ${n}: ${key} outside any user-agent group; ignored`);
          break;
        }
        const rule = create(RobotsRuleSchema, {
          type: key === "allow" ? RobotsRuleType.ALLOW : RobotsRuleType.DISALLOW,
          path: value,
        });
        current.rules.push(rule);
        rulesByLine.set(n, rule);
        for (const ua of current.userAgents) agentsWithLines.add(ua.toLowerCase());
        if (value !== "" && !value.startsWith("/") && !value.startsWith("*")) {
          warnings.push(`line ${n}: path ${quote(value)} does not start with "/" or "*", so it matches no URL`);
        }
        break;
      }
      case "crawl-delay": {
        if (current === undefined || current.userAgents.length === 0) {
          warnings.push(`line ${n}: crawl-delay outside any user-agent group; ignored`);
          break;
        }
        for (const ua of current.userAgents) agentsWithLines.add(ua.toLowerCase());
        const delay = Number(value);
        if (value === "" || !Number.isFinite(delay) || delay < 0) {
          warnings.push(`line ${n}: crawl-delay ${quote(value)} is not a number of seconds; ignored`);
        } else {
          current.crawlDelaySeconds = delay;
        }
        break;
      }
      case "sitemap": {
        if (value === "") {
          warnings.push(`line ${n}: empty sitemap; ignored`);
          break;
        }
        sitemaps.push(value);
        if (!/^https?:\/\/[^\s]+$/i.test(value)) {
          warnings.push(`line ${n}: sitemap ${quote(value)} should be an absolute http(s) URL`);
        }
        break;
      }
      default:
        warnings.push(`line ${n}: ${quote(key)} is not an RFC 9309 directive; ignored`);
    }
    inAgentLines = key === "user-agent";
  }
  const spec = create(RobotsTxtSpecSchema, {
    groups: groups.map((g) => create(RobotsGroupSchema, g) as RobotsGroup),
    sitemaps,
  });
  return { spec, rulesByLine, agents, agentsWithLines, warnings };
}

/**
 * The group key for a crawler: a product token as given, or, for a full User-Agent string, the
 * longest product token of the string that the file names (the most specific group).
 */
function groupKeyFor(userAgent: string, agents: ReadonlyMap<string, string>): string {
  const ua = userAgent.trim();
  if (productToken.test(ua)) return ua.toLowerCase();
  const words = (ua.match(/[A-Za-z_-]+/g) ?? []).map((w) => w.toLowerCase());
  let best: string | undefined;
  for (const w of words) {
    if (w !== "*" && agents.has(w) && (best === undefined || w.length > best.length)) best = w;
  }
  // No group names any of its tokens: the `*` group applies (robots-parser falls back to it).
  return best ?? words[0] ?? "*";
}

/** A matcher over the file published at `origin` + `/robots.txt`. */
export function createRobotsMatcher(origin: string, content: string, parsed: ParsedRobotsTxt): RobotsMatcher {
  const robot = robotsParser(`${origin}/robots.txt`, content);
  return (url, userAgent) => {
    const key = groupKeyFor(userAgent, parsed.agents);
    const group = parsed.agents.has(key) ? key : parsed.agents.has("*") ? "*" : undefined;
    const matchedUserAgent = group === undefined ? "" : (parsed.agents.get(group) as string);
    const allowed = robot.isAllowed(url, key);
    if (allowed === undefined) return undefined;
    if (group !== undefined && !parsed.agentsWithLines.has(group)) {
      // A group without rule lines allows everything (robots-parser would fall back to `*`).
      return { allowed: true, matchedUserAgent, matchedRule: undefined, matchedLine: 0 };
    }
    const line = robot.getMatchingLineNumber(url, key);
    const rule = line > 0 ? parsed.rulesByLine.get(line) : undefined;
    return { allowed, matchedUserAgent, matchedRule: rule, matchedLine: rule === undefined ? 0 : line };
  };
}

/**
 * Adds `Sitemap:` lines the file lacks, at its end, keeping every other byte; `added` lists the
 * URLs added.
 */
export function withSitemapLines(content: string, sitemaps: readonly string[]): { content: string; added: string[] } {
  const present = new Set(parseRobotsTxt(content).spec.sitemaps);
  const added = [...new Set(sitemaps)].filter((s) => !present.has(s));
  if (added.length === 0) return { content, added };
  let out = content;
  if (out !== "" && !/(\r\n|\r|\n)$/.test(out)) out += "\n";
  // Separate from a preceding group with a blank line, for readers; parsers do not need it.
  const lines = out.split(/\r\n|\r|\n/).filter((l) => l.trim() !== "");
  const last = lines[lines.length - 1];
  if (last !== undefined && !/^\s*sitemap\s*:/i.test(last)) out += "\n";
  out += added.map((s) => `Sitemap: ${s}\n`).join("");
  return { content: out, added };
}

/**
 * Notes on a file that would hurt a site: search crawlers kept off the home page, and sitemaps of
 * this origin that the `*` group blocks.
 */
export function robotsDiagnostics(origin: string, parsed: ParsedRobotsTxt, matcher: RobotsMatcher): string[] {
  const notes: string[] = [];
  const home = `${origin}/`;
  for (const ua of ["*", "Googlebot", "Bingbot"]) {
    if (ua !== "*" && !parsed.agents.has(ua.toLowerCase())) continue;
    const v = matcher(home, ua);
    if (v !== undefined && !v.allowed) {
      notes.push(
        `user-agent ${ua} may not fetch the home page (line ${v.matchedLine}: disallow ${v.matchedRule?.path ?? ""})`,
      );
    }
  }
  for (const s of parsed.spec.sitemaps) {
    const v = matcher(s, "*");
    if (v !== undefined && !v.allowed) {
      notes.push(`sitemap ${s} is disallowed for user-agent * by line ${v.matchedLine}`);
    }
  }
  return notes;
}

/** Path of the file on its origin. */
export const ROBOTS_TXT_PATH = "/robots.txt";

/** The origin of a site URL such as `https://example.com/`; `field` names it in errors. */
export function siteOrigin(value: string, field: string): string {
  const url = absoluteHttpUrl(value, field);
  if (url.pathname !== "/" || url.search !== "" || url.hash !== "" || url.username !== "" || url.password !== "") {
    throw new InvalidInputError(field, `"${value}" must be an origin such as https://example.com, without a path`);
  }
  return url.origin;
}
