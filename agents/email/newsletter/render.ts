/**
 * The newsletter issue: laid out in MJML (mjml renders the responsive, client-tested HTML), with a
 * plain-text part built from the same content, UTM parameters on every link, and merge fields
 * (`{{first_name}}`, `{{first_name|there}}`) left as placeholders that {@link personalize} fills
 * in per recipient at send time — the issue is rendered once, not once per recipient.
 *
 * Text from the request is escaped where it enters the HTML; Markdown (intro and section bodies)
 * goes through marked with raw HTML escaped, so a request cannot inject markup. Merge-field values
 * are escaped when they are filled in.
 */

import { Marked, type Tokens } from "marked";
import mjml2html from "mjml";
import type { CreateNewsletterRequest } from "../../../gen/mesh/email/v1/email_service_pb.ts";

/** Gmail clips messages whose HTML exceeds 102 KB. */
export const GMAIL_CLIP_BYTES = 102 * 1024;

/** Merge fields the agent fills in itself; a recipient's own fields of these names are ignored. */
export const SYSTEM_FIELDS = ["email", "name", "unsubscribe_url", "preheader"] as const;

/** Escapes text for HTML content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&${{ "&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "#39" }[c]};`);
}

/** Adds utm_source=newsletter, utm_medium=email and utm_campaign to an http(s) URL (existing ones kept). */
export function withUtm(url: string, campaign: string): string {
  if (campaign === "") return url;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url;
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") return url;
  const set = (k: string, v: string) => {
    if (!u.searchParams.has(k)) u.searchParams.set(k, v);
  };
  set("utm_source", "newsletter");
  set("utm_medium", "email");
  set("utm_campaign", campaign);
  return u.toString();
}

const placeholder = /\{\{\s*([a-z_][a-z0-9_]*)\s*(?:\|([^{}]*))?\}\}/g;

/**
 * Fills `{{name}}` / `{{name|fallback}}` placeholders. In `html` mode values are HTML-escaped (the
 * fallback is part of the template, already escaped there); in `text` mode they go in as they are,
 * line breaks removed in `line` mode (subjects).
 */
export function personalize(
  template: string,
  fields: Readonly<Record<string, string>>,
  mode: "html" | "text" | "line",
): string {
  return template.replace(placeholder, (_m, name: string, fallback: string | undefined) => {
    const v = fields[name];
    if (v === undefined || v === "") return (fallback ?? "").trim();
    if (mode === "html") return escapeHtml(v);
    return mode === "line" ? v.replace(/[\r\n]+/g, " ") : v;
  });
}

/** Names of the merge fields a template uses. */
export function fieldsUsed(template: string): string[] {
  return [...new Set([...template.matchAll(placeholder)].map((m) => m[1] as string))];
}

function markdown(utmCampaign: string): Marked {
  return new Marked({
    gfm: true,
    renderer: {
      // Raw HTML in the Markdown is shown as text, never passed through.
      html: (token: Tokens.HTML | Tokens.Tag) => escapeHtml(token.text),
    },
    walkTokens: (token) => {
      if (token.type === "link") token.href = withUtm(token.href, utmCampaign);
      if (token.type === "image") token.href = token.href.trim();
    },
  });
}

/** The rendered issue, with placeholders. */
export interface RenderedIssue {
  readonly mjml: string;
  readonly html: string;
  readonly text: string;
  /** MJML validation messages, one sentence each. */
  readonly warnings: readonly string[];
}

function postalLines(req: CreateNewsletterRequest): string[] {
  const a = req.postalAddress;
  if (!a) return [];
  const cityLine = [a.locality, [a.region, a.postalCode].filter(Boolean).join(" ")].filter(Boolean).join(", ");
  return [...a.streetLines, cityLine, a.countryCode].filter((l) => l !== "");
}

/** Lays the request out in MJML and renders the HTML and the plain-text part. */
export async function renderIssue(req: CreateNewsletterRequest): Promise<RenderedIssue> {
  const md = markdown(req.utmCampaign);
  const mdHtml = (s: string) => md.parse(s, { async: false }) as string;
  const color = req.branding?.primaryColor || "#1f5f8b";
  const lang = req.locale || "en-US";
  const e = escapeHtml;
  const parts: string[] = [];
  parts.push(`<mjml lang="${e(lang)}">`);
  parts.push("  <mj-head>");
  parts.push(`    <mj-title>${e(req.title)}</mj-title>`);
  parts.push("    <mj-preview>{{preheader}}</mj-preview>");
  parts.push("    <mj-attributes>");
  parts.push('      <mj-all font-family="Helvetica, Arial, sans-serif" />');
  parts.push('      <mj-text font-size="16px" line-height="1.5" color="#222222" />');
  parts.push(`      <mj-button background-color="${e(color)}" color="#ffffff" font-size="16px" border-radius="4px" />`);
  parts.push("    </mj-attributes>");
  parts.push("  </mj-head>");
  parts.push('  <mj-body background-color="#f4f4f4" width="600px">');
  parts.push('    <mj-section background-color="#ffffff" padding-bottom="0">');
  parts.push("      <mj-column>");
  if (req.branding?.logoUrl) {
    parts.push(
      `        <mj-image src="${e(req.branding.logoUrl)}" alt="${e(req.sender?.name ?? "")}" width="160px" />`,
    );
  }
  parts.push(
    `        <mj-text font-size="26px" font-weight="bold" color="${e(color)}"><h1 style="margin:0;font-size:26px">${e(req.title)}</h1></mj-text>`,
  );
  if (req.intro) parts.push(`        <mj-text>${mdHtml(req.intro)}</mj-text>`);
  parts.push("      </mj-column>");
  parts.push("    </mj-section>");
  for (const section of req.sections) {
    parts.push('    <mj-section background-color="#ffffff">');
    parts.push("      <mj-column>");
    parts.push(`        <mj-text><h2 style="margin:0;font-size:21px">${e(section.heading)}</h2></mj-text>`);
    if (section.body) parts.push(`        <mj-text>${mdHtml(section.body)}</mj-text>`);
    parts.push("      </mj-column>");
    parts.push("    </mj-section>");
    for (const a of section.articles) {
      const href = e(withUtm(a.url, req.utmCampaign));
      parts.push('    <mj-section background-color="#ffffff" padding-top="0">');
      if (a.imageUrl) {
        parts.push('      <mj-column width="40%">');
        parts.push(`        <mj-image src="${e(a.imageUrl)}" alt="${e(a.imageAlt)}" href="${href}" />`);
        parts.push("      </mj-column>");
        parts.push('      <mj-column width="60%">');
      } else {
        parts.push("      <mj-column>");
      }
      parts.push(
        `        <mj-text><h3 style="margin:0;font-size:18px"><a href="${href}" style="color:#222222">${e(a.title)}</a></h3></mj-text>`,
      );
      if (a.summary) parts.push(`        <mj-text>${e(a.summary)}</mj-text>`);
      parts.push(`        <mj-button href="${href}" align="left">${e(a.ctaText || "Read more")}</mj-button>`);
      parts.push("      </mj-column>");
      parts.push("    </mj-section>");
    }
  }
  const footer: string[] = [];
  if (req.branding?.footerText) footer.push(e(req.branding.footerText));
  footer.push(postalLines(req).map(e).join("<br />"));
  footer.push(
    `You receive this because you subscribed. <a href="{{unsubscribe_url}}" style="color:#555555">Unsubscribe</a>`,
  );
  parts.push("    <mj-section>");
  parts.push("      <mj-column>");
  parts.push(
    `        <mj-text font-size="12px" color="#555555" align="center">${footer.map((f) => `<p>${f}</p>`).join("")}</mj-text>`,
  );
  parts.push("      </mj-column>");
  parts.push("    </mj-section>");
  parts.push("  </mj-body>");
  parts.push("</mjml>");
  const source = `${parts.join("\n")}\n`;
  const out = await mjml2html(source, { validationLevel: "soft" });
  const warnings = out.errors.map((er) => `MJML line ${er.line}: ${er.message}`);

  const text: string[] = [req.title, "=".repeat(Math.min(req.title.length, 72)), ""];
  if (req.intro) text.push(req.intro.trim(), "");
  for (const section of req.sections) {
    text.push(section.heading, "-".repeat(Math.min(section.heading.length, 72)), "");
    if (section.body) text.push(section.body.trim(), "");
    for (const a of section.articles) {
      text.push(`* ${a.title}`);
      if (a.summary) text.push(`  ${a.summary}`);
      text.push(`  ${a.ctaText || "Read more"}: ${withUtm(a.url, req.utmCampaign)}`, "");
    }
  }
  text.push("--");
  if (req.branding?.footerText) text.push(req.branding.footerText);
  text.push(...postalLines(req), "", "Unsubscribe: {{unsubscribe_url}}", "");
  return { mjml: source, html: out.html, text: text.join("\n"), warnings };
}
