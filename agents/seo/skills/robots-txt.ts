/**
 * robots.txt management (RFC 9309).
 *
 * Method: a typed spec is rendered (one block per group: user-agent lines, crawl-delay, rules;
 * then the `Sitemap:` lines), an existing file is taken as given; either way the file is parsed
 * back into groups, checked (size against the 500 KiB crawlers must read, lines crawlers ignore,
 * search crawlers kept off the home page, blocked sitemaps) and stored for the site unless it is a
 * dry run. Tests are answered by robots-parser's RFC 9309 matching against the resulting file;
 * without a new file, the stored one is tested (no stored file allows everything, §2.3.1.3).
 * Replays of a request_id are answered by the idempotency interceptor.
 */
import { create } from "@bufbuild/protobuf";
import {
  type ManageRobotsTxtRequest,
  type ManageRobotsTxtResponse,
  ManageRobotsTxtResponseSchema,
  type RobotsTestResult,
  RobotsTestResultSchema,
  RobotsTxtSpecSchema,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import {
  absoluteHttpUrl,
  createRobotsMatcher,
  parseRobotsTxt,
  ROBOTS_TXT_MAX_BYTES,
  ROBOTS_TXT_PATH,
  renderRobotsTxt,
  robotsDiagnostics,
  siteOrigin,
  withSitemapLines,
} from "../crawl/robots-rules.ts";
import type { SiteFileStore } from "../site-files/robots-store.ts";

/** Dependencies of the skill. */
export interface ManageRobotsTxtDeps {
  /** Where the site's robots.txt is kept. */
  files: SiteFileStore;
}

/** Stored `Sitemap:` URLs that are absolute http(s) URLs (others could not be rendered). */
function storedSitemaps(content: string | undefined): string[] {
  if (content === undefined) return [];
  return parseRobotsTxt(content).spec.sitemaps.filter((s) => /^https?:\/\/\S+$/i.test(s));
}

/** Renders, stores and tests a site's robots.txt. */
export async function manageRobotsTxt(
  deps: ManageRobotsTxtDeps,
  req: ManageRobotsTxtRequest,
): Promise<ManageRobotsTxtResponse> {
  const origin = siteOrigin(req.siteUrl, "site_url");
  const stored = await deps.files.get(origin, ROBOTS_TXT_PATH);
  const warnings: string[] = [];
  let content: string;
  const source = req.source;
  if (source.case === "spec") {
    let spec = source.value;
    if (req.keepStoredSitemaps) {
      const have = new Set(spec.sitemaps.map((s, i) => absoluteHttpUrl(s, `spec.sitemaps[${i}]`).href));
      const kept = storedSitemaps(stored?.content).filter((s) => !have.has(new URL(s).href));
      if (kept.length > 0) {
        spec = create(RobotsTxtSpecSchema, { groups: spec.groups, sitemaps: [...spec.sitemaps, ...kept] });
        warnings.push(`kept ${kept.length} Sitemap line(s) of the stored file: ${kept.join(", ")}`);
      }
    }
    content = renderRobotsTxt(spec, "spec");
    const size = Buffer.byteLength(content, "utf8");
    if (size > ROBOTS_TXT_MAX_BYTES) {
      throw new InvalidInputError(
        "spec",
        `renders to ${size} bytes; crawlers need read only ${ROBOTS_TXT_MAX_BYTES} (500 KiB, RFC 9309 §2.5), so rules past that would be lost`,
      );
    }
  } else if (source.case === "content") {
    content = source.value;
    if (content.startsWith("\uFEFF")) {
      content = content.slice(1);
      warnings.push("removed the byte order mark at the start of the file");
    }
    if (req.keepStoredSitemaps) {
      const merged = withSitemapLines(content, storedSitemaps(stored?.content));
      content = merged.content;
      if (merged.added.length > 0) {
        warnings.push(`kept ${merged.added.length} Sitemap line(s) of the stored file: ${merged.added.join(", ")}`);
      }
    }
    const size = Buffer.byteLength(content, "utf8");
    if (size > ROBOTS_TXT_MAX_BYTES) {
      const cut = Buffer.from(content, "utf8").subarray(0, ROBOTS_TXT_MAX_BYTES).toString("utf8");
      const lastWhole = cut.split(/\r\n|\r|\n/).length - 1;
      warnings.push(
        `the file is ${size} bytes; crawlers need read only ${ROBOTS_TXT_MAX_BYTES} (500 KiB, RFC 9309 §2.5), so lines after ${lastWhole} may be ignored`,
      );
    }
  } else {
    content = stored?.content ?? "";
    if (stored === undefined) {
      warnings.push(`no robots.txt is stored for ${origin}; crawlers treat a missing file as allowing everything`);
    }
  }

  const parsed = parseRobotsTxt(content);
  warnings.push(...parsed.warnings);
  const matcher = createRobotsMatcher(origin, content, parsed);
  const results: RobotsTestResult[] = req.tests.map((t, i) => {
    const url = absoluteHttpUrl(t.url, `tests[${i}].url`);
    if (url.origin !== origin) {
      throw new InvalidInputError(
        `tests[${i}].url`,
        `"${t.url}" is not on ${origin}; a robots.txt applies only to its own origin (RFC 9309 §2.3)`,
      );
    }
    if (t.userAgent.trim() === "") throw new InvalidInputError(`tests[${i}].user_agent`, "must not be empty");
    const v = matcher(url.href, t.userAgent);
    if (v === undefined) throw new Error(`robots-parser did not accept ${url.href} for ${origin}`);
    return create(RobotsTestResultSchema, {
      url: t.url,
      userAgent: t.userAgent,
      allowed: v.allowed,
      matchedUserAgent: v.matchedUserAgent,
      matchedLine: v.matchedLine,
      ...(v.matchedRule === undefined ? {} : { matchedRule: v.matchedRule }),
    });
  });
  warnings.push(...robotsDiagnostics(origin, parsed, matcher));

  let storedNow = false;
  let changed = false;
  if (source.case !== undefined) {
    const differs = stored?.content !== content;
    if (req.dryRun) {
      if (differs) {
        warnings.push(
          `dry run: not stored; storing it would ${stored === undefined ? `make it the first robots.txt stored for ${origin}` : "change the stored robots.txt"}`,
        );
      }
    } else {
      if (differs) await deps.files.put(origin, ROBOTS_TXT_PATH, content);
      storedNow = true;
      changed = differs;
    }
  }

  return create(ManageRobotsTxtResponseSchema, {
    content,
    robotsUrl: `${origin}${ROBOTS_TXT_PATH}`,
    effective: parsed.spec,
    results,
    stored: storedNow,
    changed,
    byteSize: BigInt(Buffer.byteLength(content, "utf8")),
    warnings,
  });
}
