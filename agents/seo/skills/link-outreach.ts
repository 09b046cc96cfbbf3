/**
 * Link-building outreach and relationship tracking (`seo.link_outreach`).
 *
 * Method, in order:
 *  1. Relationship updates from the request (replies, won links, opt-outs, contacts made outside
 *     this skill) are applied first, so they decide who may be emailed now. DO_NOT_CONTACT is
 *     final; no relationship goes back to NEW once it left it.
 *  2. Topic texts: given, or read from the page (HTTP with robots.txt, redirects and size limits as
 *     the technical audit fetches; title, meta description, headings and main-content text).
 *  3. Scoring: TF-IDF vectors over the corpus of our target page plus every prospect of the call
 *     (tfidf.ts), topic similarity = cosine(prospect, target), score = similarity × authority / 100.
 *     Prospects are ranked by score (ties by domain).
 *  4. Selection, best first: a prospect is emailed unless it is do-not-contact, won, replied or lost,
 *     its topic could not be read, it has no contact email, its score is below `min_score`, it was
 *     emailed within the recontact interval (default 7 days), its follow-ups are used up
 *     (`max_follow_ups` after the first email; a prospect with none left whose interval has passed
 *     never answered and becomes LOST), or `max_contacts` (default 20) were already emailed.
 *  5. Sending: the template's `{{contact_name}}` (default "there"), `{{domain}}`, `{{prospect_url}}`
 *     (default the domain's home page) and `{{target_url}}` are filled in and the Email agent sends
 *     it (SendEmail over the mesh); follow-ups reply to the previous email so they thread. Each email's
 *     request id is derived from this call's request_id and the domain, so a replayed call — even one
 *     whose first attempt failed half-way — never emails a prospect twice. A suppressed recipient
 *     becomes DO_NOT_CONTACT; a recipient the mail server refuses is skipped with the reason; an
 *     unreachable Email agent or mail server fails the call (retry it with the same request_id).
 *  6. Every scored prospect is tracked per domain with its latest score; state changes and emails
 *     go to the append-only history; all of it commits in the call's transaction.
 *
 * `dry_run` does steps 1–4 and renders the emails, but sends nothing and writes nothing: the response
 * (states, counts, `contact_now`) shows what the same call would do.
 */
import { createHash, randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { type Duration, durationMs, type Timestamp, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { LockMode, OptimisticLockError, UniqueConstraintViolationException } from "@mikro-orm/postgresql";
import { EmailService, EmailStatus, type SendEmailResponse } from "../../../gen/mesh/email/v1/email_service_pb.ts";
import {
  type ManageLinkOutreachRequest,
  ManageLinkOutreachRequestSchema,
  type ManageLinkOutreachResponse,
  ManageLinkOutreachResponseSchema,
  type ProspectAssessment,
  ProspectAssessmentSchema,
  RelationshipState,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";
import type { Database, EntityManager } from "../../../lib/db/index.ts";
import { transaction } from "../../../lib/db/index.ts";
import { ConflictError, checkContract, FailedPreconditionError, InvalidInputError } from "../../../lib/errors/index.ts";
import type { Logger } from "../../../lib/log/index.ts";
import type { CallContext } from "../../../lib/server/index.ts";
import type { MeshClient } from "../../../lib/transport/index.ts";
import {
  createRobotsGate,
  DEFAULT_USER_AGENT,
  fetchResource,
  type HttpOptions,
  type RobotsGate,
} from "../crawl/audit-fetch.ts";
import { analyzePage } from "../crawl/audit-page.ts";
import { absoluteHttpUrl } from "../crawl/robots-rules.ts";
import { SeoOutreachEvent, SeoOutreachProspect, type SeoOutreachProspectRow } from "../outreach-entities.ts";
import { cosine, terms, tfidfVectors } from "../text/tfidf.ts";

/** Dependencies of the skill (the agent's deps satisfy it). */
export interface LinkOutreachDeps {
  /** The SEO agent's database (technical schema). */
  readonly db: Database;
  /** Mesh client, for the Email agent. */
  readonly client: MeshClient;
  /** Clock. */
  readonly now: () => Date;
  /** Logger. */
  readonly log: Logger;
}

const DAY_MS = 86_400_000;
const DEFAULT_MAX_CONTACTS = 20;
const DEFAULT_RECONTACT_MS = 7 * DAY_MS;
/** Characters of a fetched page's text used for scoring (the contract's limit on given text). */
const MAX_TOPIC_CHARS = 100_000;
const FETCH_CONCURRENCY = 8;
const FETCH_TIMEOUT_MS = 10_000;
/** The Email agent's limits on names and subjects. */
const MAX_NAME_CHARS = 100;
const MAX_SUBJECT_CHARS = 300;
/** Tag of outreach emails in the Email agent's records. */
export const OUTREACH_EMAIL_TAG = "seo.link_outreach";

const placeholders = ["contact_name", "domain", "prospect_url", "target_url"] as const;
type Placeholder = (typeof placeholders)[number];
const placeholderPattern = /\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g;

/** Message-level rules of the contract and the field they are about. */
const ruleFields: Readonly<Record<string, string>> = {
  "link_outreach.work": "prospects",
  "link_outreach.template": "template",
  "link_prospect.topic": "topic_text",
};

/** The form domains are tracked in: lower-case, no trailing dot, no `www.`. */
export function normalizeDomain(domain: string): string {
  return domain
    .trim()
    .toLowerCase()
    .replace(/\.$/, "")
    .replace(/^www\./, "");
}

/**
 * The request id of the email to one prospect: a UUID (version 8, RFC 9562 §5.8, name-based on
 * SHA-256) of this call's request_id and the domain, so a replay asks the Email agent for the same
 * message and gets the first result instead of a second email.
 */
export function prospectEmailRequestId(requestId: string, domain: string): string {
  const h = createHash("sha256").update(`${OUTREACH_EMAIL_TAG}\n${requestId}\n${domain}`).digest();
  h[6] = ((h[6] as number) & 0x0f) | 0x80;
  h[8] = ((h[8] as number) & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Renders a template text; `{{name}}` placeholders only (checked beforehand). */
function render(text: string, values: Readonly<Record<Placeholder, string>>): string {
  return text.replace(placeholderPattern, (_, name: string) => values[name as Placeholder] ?? "");
}

function checkPlaceholders(text: string, field: string): void {
  for (const m of text.matchAll(placeholderPattern)) {
    if (!(placeholders as readonly string[]).includes(m[1] as string)) {
      throw new InvalidInputError(
        field,
        `unknown placeholder ${m[0]}; use ${placeholders.map((p) => `{{${p}}}`).join(", ")}`,
      );
    }
  }
}

/** A display name the Email agent accepts: one line, at most 100 characters. */
function displayName(name: string): string {
  return name
    .replace(/[\r\n]+/g, " ")
    .trim()
    .slice(0, MAX_NAME_CHARS)
    .trim();
}

/** A prospect of the call, checked. */
interface Prospect {
  readonly index: number;
  readonly domain: string;
  readonly url: string;
  readonly contactEmail: string;
  readonly contactName: string;
  readonly topicText: string;
  readonly authority: number;
}

/** A relationship update of the call, checked. */
interface Update {
  readonly index: number;
  readonly domain: string;
  readonly state: RelationshipState;
  readonly note: string;
  readonly occurredAt: Date | undefined;
  readonly linkUrl: string;
}

/** The request, checked, with defaults applied. */
interface Plan {
  readonly requestId: string;
  readonly targetUrl: string;
  readonly targetText: string;
  readonly prospects: readonly Prospect[];
  readonly updates: readonly Update[];
  readonly template: { readonly subject: string; readonly body: string } | undefined;
  readonly maxContacts: number;
  readonly minScore: number;
  readonly recontactMs: number;
  readonly maxFollowUps: number;
  readonly dryRun: boolean;
  readonly sender: { readonly name: string; readonly address: string } | undefined;
}

/** Checks the request (the contract's rules, again, for direct callers, and what they cannot say). */
function checkRequest(req: ManageLinkOutreachRequest): Plan {
  checkContract(ManageLinkOutreachRequestSchema, req, ruleFields);
  const target = req.target as NonNullable<ManageLinkOutreachRequest["target"]>; // required
  if (target.topicText.trim() === "") absoluteHttpUrl(target.url, "target.url");
  const seen = new Map<string, number>();
  const prospects = req.prospects.map((p, index): Prospect => {
    const domain = normalizeDomain(p.domain);
    const earlier = seen.get(domain);
    if (earlier !== undefined) {
      throw new InvalidInputError(`prospects[${index}].domain`, `${domain} is already prospects[${earlier}]`);
    }
    seen.set(domain, index);
    if (p.topicText.trim() === "") absoluteHttpUrl(p.url, `prospects[${index}].url`);
    return {
      index,
      domain,
      url: p.url,
      contactEmail: p.contactEmail.trim(),
      contactName: p.contactName,
      topicText: p.topicText,
      authority: p.authority,
    };
  });
  const updates = req.updates.map((u, index): Update => {
    if (u.linkUrl !== "" && u.state !== RelationshipState.WON) {
      throw new InvalidInputError(`updates[${index}].link_url`, "is only recorded with RELATIONSHIP_STATE_WON");
    }
    return {
      index,
      domain: normalizeDomain(u.domain),
      state: u.state,
      note: u.note,
      occurredAt: u.occurredAt ? timestampDate(u.occurredAt as Timestamp) : undefined,
      linkUrl: u.linkUrl,
    };
  });
  if (req.template) {
    checkPlaceholders(req.template.subject, "template.subject");
    checkPlaceholders(req.template.body, "template.body");
  }
  if (req.senderName.trim() !== "" && req.senderEmail === "") {
    throw new InvalidInputError("sender_email", "is required with sender_name (the default sender has its own name)");
  }
  return {
    requestId: req.requestId,
    targetUrl: target.url,
    targetText: target.topicText,
    prospects,
    updates,
    template: req.template ? { subject: req.template.subject, body: req.template.body } : undefined,
    maxContacts: req.maxContacts || DEFAULT_MAX_CONTACTS,
    minScore: req.minScore,
    recontactMs: req.recontactInterval ? durationMs(req.recontactInterval as Duration) : DEFAULT_RECONTACT_MS,
    maxFollowUps: req.maxFollowUps,
    dryRun: req.dryRun,
    sender:
      req.senderEmail === ""
        ? undefined
        : { name: displayName(req.senderName) || req.senderEmail, address: req.senderEmail },
  };
}

/** A page's topic text, or why it could not be read. */
interface Topic {
  readonly text: string;
  readonly error: string;
}

/** Reads a page's topic text: title, meta description, headings and main-content text. */
async function fetchTopic(url: string, http: HttpOptions, robots: RobotsGate): Promise<Topic> {
  if (!(await robots.allowed(url))) return { text: "", error: "robots.txt disallows fetching the page" };
  const page = await fetchResource(url, http, (u) => robots.allowed(u));
  if (page.body === undefined) {
    if (page.error !== "") return { text: "", error: page.error };
    if (page.finalStatus < 200 || page.finalStatus >= 300) return { text: "", error: `HTTP ${page.finalStatus}` };
    return { text: "", error: `not an HTML page (${page.contentType || "no Content-Type"})` };
  }
  const facts = analyzePage(page.body, page.finalUrl, {
    robotsToken: (/[A-Za-z_-]+/.exec(http.userAgent)?.[0] ?? "").toLowerCase(),
    xRobotsTag: page.xRobotsTag,
    linkHeader: page.linkHeader,
  });
  const text = [facts.title, facts.metaDescription, ...facts.headings.map((h) => h.text), facts.text]
    .filter((t) => t !== "")
    .join("\n")
    .slice(0, MAX_TOPIC_CHARS);
  return text.trim() === "" ? { text: "", error: "the page has no text" } : { text, error: "" };
}

/** Topic texts of the target and every prospect, fetching those not given (a few at a time). */
async function loadTopics(plan: Plan, signal: AbortSignal): Promise<{ target: string; prospects: Topic[] }> {
  const http: HttpOptions = { userAgent: DEFAULT_USER_AGENT, timeoutMs: FETCH_TIMEOUT_MS, signal };
  let robots: RobotsGate | undefined;
  const fetchOne = (url: string): Promise<Topic> => {
    robots ??= createRobotsGate(http);
    return fetchTopic(url, http, robots);
  };
  let target = plan.targetText;
  if (target.trim() === "") {
    const got = await fetchOne(plan.targetUrl);
    if (got.error !== "") {
      throw new FailedPreconditionError(
        `target.url: could not read the page's topic (${got.error}); give target.topic_text instead`,
      );
    }
    target = got.text;
  }
  const prospects: Topic[] = plan.prospects.map((p) => ({ text: p.topicText, error: "" }));
  const todo = plan.prospects.filter((p) => p.topicText.trim() === "");
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < todo.length) {
      const p = todo[next++] as Prospect;
      prospects[p.index] = await fetchOne(p.url);
    }
  };
  await Promise.all(Array.from({ length: Math.min(FETCH_CONCURRENCY, todo.length) }, worker));
  return { target, prospects };
}

/** A prospect with its score. */
interface Scored {
  readonly prospect: Prospect;
  readonly similarity: number;
  readonly score: number;
  readonly topicError: string;
  rank: number;
}

function scoreProspects(plan: Plan, topics: { target: string; prospects: readonly Topic[] }): Scored[] {
  const vectors = tfidfVectors([terms(topics.target), ...topics.prospects.map((t) => terms(t.text))]);
  const target = vectors[0] as NonNullable<(typeof vectors)[0]>;
  const scored = plan.prospects.map((prospect, i): Scored => {
    const similarity = cosine(vectors[i + 1] ?? new Map(), target);
    return {
      prospect,
      similarity,
      score: (similarity * prospect.authority) / 100,
      topicError: topics.prospects[i]?.error ?? "",
      rank: 0,
    };
  });
  scored.sort((a, b) => b.score - a.score || (a.prospect.domain < b.prospect.domain ? -1 : 1));
  scored.forEach((s, i) => {
    s.rank = i + 1;
  });
  return scored;
}

/** A relationship as this call sees and changes it (written back at the end unless dry run). */
interface Relationship {
  readonly domain: string;
  /** The stored row; undefined for a domain not tracked yet. */
  readonly row: SeoOutreachProspectRow | undefined;
  readonly previousState: RelationshipState;
  state: RelationshipState;
  url: string;
  contactEmail: string;
  contactName: string;
  authority: number;
  topicSimilarity: number;
  score: number;
  targetUrl: string;
  contactAttempts: number;
  lastContactedAt: Date | undefined;
  lastMessageId: string;
  wonLinkUrl: string;
}

function relationshipOf(row: SeoOutreachProspectRow): Relationship {
  return {
    domain: row.domain,
    row,
    previousState: row.state as RelationshipState,
    state: row.state as RelationshipState,
    url: row.url,
    contactEmail: row.contactEmail,
    contactName: row.contactName,
    // double precision columns may come back as strings.
    authority: Number(row.authority),
    topicSimilarity: Number(row.topicSimilarity),
    score: Number(row.score),
    targetUrl: row.targetUrl,
    contactAttempts: row.contactAttempts,
    lastContactedAt: row.lastContactedAt ?? undefined,
    lastMessageId: row.lastMessageId,
    wonLinkUrl: row.wonLinkUrl,
  };
}

function newRelationship(domain: string): Relationship {
  return {
    domain,
    row: undefined,
    previousState: RelationshipState.NEW,
    state: RelationshipState.NEW,
    url: "",
    contactEmail: "",
    contactName: "",
    authority: 0,
    topicSimilarity: 0,
    score: 0,
    targetUrl: "",
    contactAttempts: 0,
    lastContactedAt: undefined,
    lastMessageId: "",
    wonLinkUrl: "",
  };
}

/** A history entry to append. */
interface PendingEvent {
  readonly domain: string;
  readonly kind: "tracked" | "contacted" | "update" | "suppressed" | "no_reply" | "send_failed";
  readonly fromState: RelationshipState;
  readonly toState: RelationshipState;
  readonly note: string;
  readonly linkUrl?: string;
  readonly messageId?: string;
  readonly occurredAt: Date;
}

const stateNames: Readonly<Record<number, string>> = {
  [RelationshipState.NEW]: "NEW",
  [RelationshipState.CONTACTED]: "CONTACTED",
  [RelationshipState.REPLIED]: "REPLIED",
  [RelationshipState.WON]: "WON",
  [RelationshipState.LOST]: "LOST",
  [RelationshipState.DO_NOT_CONTACT]: "DO_NOT_CONTACT",
};

/** Applies the request's updates in order; DO_NOT_CONTACT is final and nothing returns to NEW. */
function applyUpdates(
  updates: readonly Update[],
  rels: Map<string, Relationship>,
  events: PendingEvent[],
  now: Date,
): void {
  for (const u of updates) {
    let rel = rels.get(u.domain);
    if (rel === undefined) {
      rel = newRelationship(u.domain);
      rels.set(u.domain, rel);
    }
    const from = rel.state;
    if (from === RelationshipState.DO_NOT_CONTACT && u.state !== RelationshipState.DO_NOT_CONTACT) {
      throw new FailedPreconditionError(
        `updates[${u.index}].state: ${u.domain} is DO_NOT_CONTACT, which is final; it cannot become ${stateNames[u.state]}`,
      );
    }
    if (u.state === RelationshipState.NEW && from !== RelationshipState.NEW) {
      throw new FailedPreconditionError(
        `updates[${u.index}].state: ${u.domain} is ${stateNames[from]}; a relationship cannot go back to NEW`,
      );
    }
    const at = u.occurredAt ?? now;
    rel.state = u.state;
    if (u.state === RelationshipState.WON && u.linkUrl !== "") rel.wonLinkUrl = u.linkUrl;
    if (u.state === RelationshipState.CONTACTED) {
      // A contact made outside this skill counts towards the follow-up limit and the interval.
      rel.contactAttempts += 1;
      if (rel.lastContactedAt === undefined || at > rel.lastContactedAt) rel.lastContactedAt = at;
    }
    events.push({
      domain: u.domain,
      kind: "update",
      fromState: from,
      toState: u.state,
      note: u.note,
      linkUrl: u.linkUrl,
      occurredAt: at,
    });
  }
}

/** "3 days", "5 hours", "12 minutes", "less than a minute". */
function elapsed(ms: number): string {
  const unit = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;
  if (ms >= DAY_MS) return unit(Math.floor(ms / DAY_MS), "day");
  if (ms >= 3_600_000) return unit(Math.floor(ms / 3_600_000), "hour");
  if (ms >= 60_000) return unit(Math.floor(ms / 60_000), "minute");
  return "less than a minute";
}

/**
 * Why a prospect is not emailed now ("" when it is), moving a CONTACTED prospect whose follow-ups
 * are used up and whose interval has passed to LOST (it never answered).
 */
function skipReason(
  s: Scored,
  rel: Relationship,
  plan: Plan,
  contacted: number,
  now: Date,
  events: PendingEvent[],
): string {
  switch (rel.state) {
    case RelationshipState.DO_NOT_CONTACT:
      return "do-not-contact";
    case RelationshipState.WON:
      return "link already won";
    case RelationshipState.REPLIED:
      return "replied; follow-ups stop";
    case RelationshipState.LOST:
      return "relationship lost";
    default:
      break;
  }
  if (s.topicError !== "") return `topic text unavailable: ${s.topicError}`;
  if (s.prospect.contactEmail === "") return "no contact email";
  if (s.score < plan.minScore) return `score ${s.score.toFixed(3)} is below min_score ${plan.minScore}`;
  if (rel.state === RelationshipState.CONTACTED && rel.contactAttempts > 0) {
    const since = rel.lastContactedAt ? now.getTime() - rel.lastContactedAt.getTime() : Number.POSITIVE_INFINITY;
    const followUps = rel.contactAttempts - 1;
    if (followUps >= plan.maxFollowUps) {
      if (since >= plan.recontactMs) {
        const note = `no reply after ${rel.contactAttempts} email${rel.contactAttempts === 1 ? "" : "s"}`;
        events.push({
          domain: rel.domain,
          kind: "no_reply",
          fromState: rel.state,
          toState: RelationshipState.LOST,
          note,
          occurredAt: now,
        });
        rel.state = RelationshipState.LOST;
        return `${note}; marked lost`;
      }
      return plan.maxFollowUps === 0
        ? "already emailed and max_follow_ups is 0"
        : `follow-up limit reached (${followUps} of ${plan.maxFollowUps} sent)`;
    }
    if (since < plan.recontactMs) {
      return `contacted ${elapsed(since)} ago (recontact interval ${elapsed(plan.recontactMs)})`;
    }
  }
  if (contacted >= plan.maxContacts) return `max_contacts (${plan.maxContacts}) reached`;
  return "";
}

/** Writes relationships and history (not in a dry run). */
async function persist(
  em: EntityManager,
  plan: Plan,
  rels: ReadonlyMap<string, Relationship>,
  events: readonly PendingEvent[],
  now: Date,
): Promise<void> {
  for (const rel of rels.values()) {
    const fields = {
      state: rel.state,
      url: rel.url.slice(0, 2048),
      contactEmail: rel.contactEmail.slice(0, 254),
      contactName: rel.contactName.slice(0, 200),
      authority: rel.authority,
      topicSimilarity: rel.topicSimilarity,
      score: rel.score,
      targetUrl: rel.targetUrl.slice(0, 2048),
      contactAttempts: rel.contactAttempts,
      lastContactedAt: rel.lastContactedAt ?? null,
      lastMessageId: rel.lastMessageId,
      wonLinkUrl: rel.wonLinkUrl,
      updatedAt: now,
    };
    if (rel.row) em.assign(rel.row, fields);
    else em.create(SeoOutreachProspect, { domain: rel.domain, createdAt: now, ...fields });
  }
  for (const e of events) {
    em.create(SeoOutreachEvent, {
      id: randomUUID(),
      domain: e.domain,
      kind: e.kind,
      fromState: e.fromState,
      toState: e.toState,
      note: e.note,
      linkUrl: e.linkUrl ?? "",
      messageId: e.messageId ?? "",
      requestId: plan.requestId,
      occurredAt: e.occurredAt,
      recordedAt: now,
    });
  }
  try {
    await em.flush();
  } catch (err) {
    if (err instanceof OptimisticLockError || err instanceof UniqueConstraintViolationException) {
      throw new ConflictError(
        "another outreach call changed the same prospects at the same time; retry with the same request_id",
      );
    }
    throw err;
  }
}

/** Tracked prospects per state, every state listed. */
async function stateCounts(
  em: EntityManager,
  db: Database,
  rels: ReadonlyMap<string, Relationship>,
  dryRun: boolean,
): Promise<Map<RelationshipState, number>> {
  const rows = await em.execute<Array<{ state: number; n: string }>>(
    `select state, count(*) as n from "${db.schema}"."seo_outreach_prospect" group by state`,
  );
  const counts = new Map<RelationshipState, number>();
  for (const r of rows) counts.set(r.state as RelationshipState, Number(r.n));
  if (dryRun) {
    // Nothing was written: show the counts the same call would leave.
    for (const rel of rels.values()) {
      if (rel.row) counts.set(rel.previousState, (counts.get(rel.previousState) ?? 0) - 1);
      counts.set(rel.state, (counts.get(rel.state) ?? 0) + 1);
    }
  }
  return counts;
}

/** Runs link outreach on a validated request; see the file comment for the method. */
export async function manageLinkOutreach(
  deps: LinkOutreachDeps,
  req: ManageLinkOutreachRequest,
  ctx?: CallContext,
): Promise<ManageLinkOutreachResponse> {
  const plan = checkRequest(req);
  const topics = await loadTopics(plan, ctx?.signal ?? new AbortController().signal);
  const scored = scoreProspects(plan, topics);
  const now = deps.now();

  return transaction(deps.db, async (em) => {
    const domains = [...new Set([...plan.prospects.map((p) => p.domain), ...plan.updates.map((u) => u.domain)])];
    // Locked (in domain order) unless dry: two calls must not email the same prospect at once.
    const rows = await em.find(
      SeoOutreachProspect,
      { domain: { $in: domains } },
      plan.dryRun
        ? { orderBy: { domain: "asc" } }
        : { orderBy: { domain: "asc" }, lockMode: LockMode.PESSIMISTIC_WRITE },
    );
    const rels = new Map(rows.map((r) => [r.domain, relationshipOf(r)] as const));
    const events: PendingEvent[] = [];
    applyUpdates(plan.updates, rels, events, now);

    const emails = deps.client.agent(EmailService);
    const assessments: ProspectAssessment[] = [];
    let contacted = 0;
    for (const s of scored) {
      const p = s.prospect;
      let rel = rels.get(p.domain);
      if (rel === undefined) {
        rel = newRelationship(p.domain);
        rels.set(p.domain, rel);
        events.push({
          domain: p.domain,
          kind: "tracked",
          fromState: RelationshipState.NEW,
          toState: RelationshipState.NEW,
          note: `scored ${s.score.toFixed(3)} for ${plan.targetUrl}`,
          occurredAt: now,
        });
      }
      Object.assign(rel, {
        url: p.url || rel.url,
        contactEmail: p.contactEmail || rel.contactEmail,
        contactName: p.contactName || rel.contactName,
        authority: p.authority,
        topicSimilarity: s.similarity,
        score: s.score,
        targetUrl: plan.targetUrl,
      });
      const a = create(ProspectAssessmentSchema, {
        domain: p.domain,
        url: p.url,
        topicSimilarity: s.similarity,
        authority: p.authority,
        score: s.score,
        rank: s.rank,
        previousState: rel.previousState,
      });
      let reason = skipReason(s, rel, plan, contacted, now, events);
      if (reason === "") {
        const template = plan.template; // absent only in a dry run (the contract requires it otherwise)
        const values: Record<Placeholder, string> = {
          contact_name: p.contactName.trim() || "there",
          domain: p.domain,
          prospect_url: p.url || `https://${p.domain}/`,
          target_url: plan.targetUrl,
        };
        const subject = render(template?.subject ?? "", values)
          .replace(/[\r\n]+/g, " ")
          .trim()
          .slice(0, MAX_SUBJECT_CHARS);
        const body = render(template?.body ?? "", values);
        a.renderedSubject = subject;
        a.renderedBody = body;
        if (plan.dryRun) {
          a.contactNow = true;
        } else {
          reason = await send(emails, plan, s, rel, subject, body, a, events, now);
        }
        if (a.contactNow) contacted++;
      }
      a.skipReason = reason;
      assessments.push(a);
    }

    // Relationships only updated (not scored in this call) follow the ranked prospects.
    const scoredDomains = new Set(plan.prospects.map((p) => p.domain));
    const updatedOnly = [...new Set(plan.updates.map((u) => u.domain))].filter((d) => !scoredDomains.has(d)).sort();
    for (const d of updatedOnly) {
      const rel = rels.get(d) as Relationship;
      assessments.push(
        create(ProspectAssessmentSchema, {
          domain: d,
          url: rel.url,
          topicSimilarity: rel.topicSimilarity,
          authority: rel.authority,
          score: rel.score,
          previousState: rel.previousState,
        }),
      );
    }
    for (const a of assessments) {
      const rel = rels.get(a.domain) as Relationship;
      a.state = rel.state;
      a.contactAttempts = rel.contactAttempts;
      if (rel.lastContactedAt) a.lastContactedAt = timestampFromDate(rel.lastContactedAt);
    }

    if (!plan.dryRun) await persist(em, plan, rels, events, now);
    const counts = await stateCounts(em, deps.db, rels, plan.dryRun);
    deps.log.info("link outreach", {
      requestId: plan.requestId,
      prospects: plan.prospects.length,
      contacted,
      updates: plan.updates.length,
      dryRun: plan.dryRun,
    });
    return create(ManageLinkOutreachResponseSchema, {
      prospects: assessments,
      contactedCount: contacted,
      skippedCount: plan.prospects.length - contacted,
      updatedCount: plan.updates.length,
      stateCounts: [
        RelationshipState.NEW,
        RelationshipState.CONTACTED,
        RelationshipState.REPLIED,
        RelationshipState.WON,
        RelationshipState.LOST,
        RelationshipState.DO_NOT_CONTACT,
      ].map((state) => ({ state, count: Math.max(0, counts.get(state) ?? 0) })),
    });
  });
}

/**
 * Emails one prospect through the Email agent and records the outcome on its relationship.
 * Returns the skip reason ("" when sent). Refusals of this one message (a rejected recipient, or a
 * request id already used for other content) skip the prospect; anything else fails the call.
 */
async function send(
  emails: Client<typeof EmailService>,
  plan: Plan,
  s: Scored,
  rel: Relationship,
  subject: string,
  body: string,
  a: ProspectAssessment,
  events: PendingEvent[],
  now: Date,
): Promise<string> {
  const p = s.prospect;
  const followUp = rel.contactAttempts > 0 && rel.lastMessageId !== "";
  let res: SendEmailResponse;
  try {
    res = await emails.sendEmail({
      requestId: prospectEmailRequestId(plan.requestId, p.domain),
      ...(plan.sender ? { from: { name: plan.sender.name, address: plan.sender.address } } : {}),
      to: { address: p.contactEmail, name: displayName(p.contactName) },
      subject,
      text: body,
      ...(followUp ? { inReplyTo: rel.lastMessageId } : {}),
      tag: OUTREACH_EMAIL_TAG,
    });
  } catch (err) {
    const ce = ConnectError.from(err);
    if (ce.code === Code.FailedPrecondition || ce.code === Code.InvalidArgument || ce.code === Code.AlreadyExists) {
      events.push({
        domain: p.domain,
        kind: "send_failed",
        fromState: rel.state,
        toState: rel.state,
        note: ce.rawMessage,
        occurredAt: now,
      });
      return `email not sent: ${ce.rawMessage}`;
    }
    throw ce;
  }
  if (res.status === EmailStatus.SUPPRESSED) {
    events.push({
      domain: p.domain,
      kind: "suppressed",
      fromState: rel.state,
      toState: RelationshipState.DO_NOT_CONTACT,
      note: `recipient on the Email agent's suppression list${res.suppressionReason ? ` (${res.suppressionReason})` : ""}`,
      occurredAt: now,
    });
    rel.state = RelationshipState.DO_NOT_CONTACT;
    return "recipient is on the email suppression list; marked do-not-contact";
  }
  const from = rel.state;
  rel.state = RelationshipState.CONTACTED;
  rel.contactAttempts += 1;
  rel.lastContactedAt = now;
  rel.lastMessageId = res.messageId;
  events.push({
    domain: p.domain,
    kind: "contacted",
    fromState: from,
    toState: RelationshipState.CONTACTED,
    note: `${followUp ? `follow-up ${rel.contactAttempts - 1}` : "first email"} to ${p.contactEmail}${
      res.status === EmailStatus.WRITTEN_TO_OUTBOX ? " (written to the Email agent's outbox)" : ""
    }`,
    messageId: res.messageId,
    occurredAt: now,
  });
  a.contactNow = true;
  a.emailMessageId = res.messageId;
  return "";
}
