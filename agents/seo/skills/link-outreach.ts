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
 *  5. Claiming, in one short transaction: every domain of the call gets a relationship row
 *     (insert … on conflict do nothing), the rows are locked in domain order, steps 1 and 4 decide
 *     on them, and each email to send is claimed in `seo_outreach_send` (state `sending`, keyed by
 *     request_id and domain, with the exact SendEmail request). The transaction commits before any
 *     email is asked for, so a concurrent call for the same domains waits only for that commit and
 *     then sees the claim (a partial unique index allows one unconfirmed email per domain).
 *  6. Sending, outside any transaction or lock: the template's `{{contact_name}}` (default
 *     "there"), `{{domain}}`, `{{prospect_url}}` (default the domain's home page) and
 *     `{{target_url}}` were filled in, and the Email agent sends it (SendEmail over the mesh, its
 *     request id derived from this call's request_id and the domain); follow-ups reply to the
 *     previous email so they thread. Each outcome is recorded right after in a short transaction of
 *     its own: `sent` (the relationship becomes CONTACTED), `suppressed` (DO_NOT_CONTACT),
 *     `refused` (skipped with the reason), or `unknown` (the answer was lost or ambiguous). An
 *     unreachable Email agent fails the call: the email being asked for stays `unknown`, those not
 *     asked for yet are given back.
 *
 * At most once: an email is never sent twice. A retry with the same request_id answers from the
 * claims (no new email); for a claim still `sending` or `unknown` (the process died mid-send, or the
 * answer was lost) it asks the Email agent again for the same message, which answers with the first
 * outcome or sends it if it never got it. Any other call skips a domain whose email is unconfirmed,
 * saying so, until that retry or a relationship update (which settles it) records what happened.
 *
 * `dry_run` does steps 1–4 and renders the emails, but sends nothing and writes nothing: the response
 * (states, counts, `contact_now`) shows what the same call would do.
 */
import { createHash, randomUUID } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type Duration, durationMs, type Timestamp, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import {
  DeadlockException,
  LockMode,
  OptimisticLockError,
  UniqueConstraintViolationException,
} from "@mikro-orm/postgresql";
import {
  EmailService,
  EmailStatus,
  type SendEmailRequest,
  SendEmailRequestSchema,
  type SendEmailResponse,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
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
import {
  SeoOutreachEvent,
  SeoOutreachProspect,
  type SeoOutreachProspectRow,
  SeoOutreachSend,
  type SeoOutreachSendRow,
} from "../outreach-entities.ts";
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
  readonly kind: "tracked" | "contacted" | "update" | "suppressed" | "no_reply" | "send_failed" | "send_unknown";
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

/** The sends of the call's domains this call must know about. */
interface KnownSends {
  /** This request_id's emails, by domain (a retry of the call, or its own claims). */
  readonly ours: Map<string, SeoOutreachSendRow>;
  /** Other calls' unconfirmed emails (`sending` or `unknown`), by domain. */
  readonly unconfirmed: Map<string, SeoOutreachSendRow>;
}

/** An email to ask the Email agent for, claimed in the database before it is asked. */
interface Claim {
  readonly domain: string;
  readonly assessment: ProspectAssessment;
  /** The exact SendEmail request (a retry re-sends the stored one). */
  readonly request: SendEmailRequest;
  /** Contact attempt this email is (1 = first email). */
  readonly attempt: number;
  /** True when claimed by this attempt (false: an earlier attempt's claim being settled). */
  readonly fresh: boolean;
}

/** What the decision step produced. */
interface Decision {
  readonly rels: Map<string, Relationship>;
  readonly events: PendingEvent[];
  readonly assessments: ProspectAssessment[];
  readonly claims: Claim[];
}

/** Why a prospect is skipped while another call's email to it is unconfirmed. */
function unconfirmedReason(send: SeoOutreachSendRow): string {
  const what =
    send.state === "unknown"
      ? `its outcome is unknown (${send.note})`
      : "it is being sent, or that call stopped before recording the outcome";
  return `an email from request ${send.requestId} claimed at ${send.claimedAt.toISOString()} is unconfirmed: ${what}; not sent again — retry that request_id to settle it, or record what happened with an update`;
}

/**
 * Decides, best score first, who is emailed now (steps 4–5 of the file comment, without sending):
 * the relationships, their pending history and the emails to claim. Nothing is written here.
 */
function decide(
  plan: Plan,
  scored: readonly Scored[],
  rels: Map<string, Relationship>,
  sends: KnownSends,
  tracked: ReadonlySet<string>,
  now: Date,
): Decision {
  const events: PendingEvent[] = [];
  applyUpdates(plan.updates, rels, events, now);
  const assessments: ProspectAssessment[] = [];
  const claims: Claim[] = [];
  let contacted = 0;
  for (const s of scored) {
    const p = s.prospect;
    let rel = rels.get(p.domain);
    if (rel === undefined) {
      rel = newRelationship(p.domain);
      rels.set(p.domain, rel);
    }
    if (tracked.has(p.domain)) {
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
    assessments.push(a);

    // A retry of this request_id answers as the first attempt did, and never emails twice.
    const ours = sends.ours.get(p.domain);
    if (ours !== undefined) {
      const request = fromBinary(SendEmailRequestSchema, new Uint8Array(ours.emailRequest));
      a.renderedSubject = request.subject;
      a.renderedBody = request.text;
      if (ours.state === "sent") {
        a.contactNow = true;
        a.emailMessageId = ours.messageId;
        contacted++;
      } else if (ours.state === "sending" || ours.state === "unknown") {
        // Asked again under the same SendEmail request id: the Email agent answers with the first
        // outcome, or sends it now if it never got it — at most one email either way.
        claims.push({ domain: p.domain, assessment: a, request, attempt: ours.attempt, fresh: false });
        contacted++;
      } else {
        a.skipReason = ours.note || `email ${ours.state}`;
      }
      continue;
    }
    const other = sends.unconfirmed.get(p.domain);
    if (other !== undefined) {
      a.skipReason = unconfirmedReason(other);
      continue;
    }
    const reason = skipReason(s, rel, plan, contacted, now, events);
    if (reason !== "") {
      a.skipReason = reason;
      continue;
    }
    const template = plan.template; // absent only in a dry run (the contract requires it otherwise)
    const values: Record<Placeholder, string> = {
      contact_name: p.contactName.trim() || "there",
      domain: p.domain,
      prospect_url: p.url || `https://${p.domain}/`,
      target_url: plan.targetUrl,
    };
    a.renderedSubject = render(template?.subject ?? "", values)
      .replace(/[\r\n]+/g, " ")
      .trim()
      .slice(0, MAX_SUBJECT_CHARS);
    a.renderedBody = render(template?.body ?? "", values);
    contacted++;
    if (plan.dryRun) {
      a.contactNow = true;
      continue;
    }
    const followUp = rel.contactAttempts > 0 && rel.lastMessageId !== "";
    claims.push({
      domain: p.domain,
      assessment: a,
      attempt: rel.contactAttempts + 1,
      fresh: true,
      request: create(SendEmailRequestSchema, {
        requestId: prospectEmailRequestId(plan.requestId, p.domain),
        ...(plan.sender ? { from: { name: plan.sender.name, address: plan.sender.address } } : {}),
        to: { address: p.contactEmail, name: displayName(p.contactName) },
        subject: a.renderedSubject,
        text: a.renderedBody,
        ...(followUp ? { inReplyTo: rel.lastMessageId } : {}),
        tag: OUTREACH_EMAIL_TAG,
      }),
    });
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
  return { rels, events, assessments, claims };
}

/** Appends history entries to `em`'s unit of work. */
function addEvents(em: EntityManager, requestId: string, events: readonly PendingEvent[], now: Date): void {
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
      requestId,
      occurredAt: e.occurredAt,
      recordedAt: now,
    });
  }
}

/** Writes a relationship's fields onto its (locked) row. */
function assignRelationship(em: EntityManager, row: SeoOutreachProspectRow, rel: Relationship, now: Date): void {
  em.assign(row, {
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
  });
}

/** Reads the sends of `domains` this call must know about (at most one unconfirmed per domain). */
async function knownSends(
  em: EntityManager,
  requestId: string,
  domains: readonly string[],
  lock: boolean,
): Promise<KnownSends> {
  const rows = await em.find(
    SeoOutreachSend,
    {
      domain: { $in: domains as string[] },
      $or: [{ requestId }, { state: { $in: ["sending", "unknown"] } }],
    },
    lock ? { lockMode: LockMode.PESSIMISTIC_WRITE } : {},
  );
  const sends: KnownSends = { ours: new Map(), unconfirmed: new Map() };
  for (const r of rows) (r.requestId === requestId ? sends.ours : sends.unconfirmed).set(r.domain, r);
  return sends;
}

/** Maps a lost race between two calls on the same prospects to ABORTED (retry with the same request_id). */
function raced(err: unknown): unknown {
  if (
    err instanceof OptimisticLockError ||
    err instanceof UniqueConstraintViolationException ||
    err instanceof DeadlockException
  ) {
    return new ConflictError(
      "another outreach call changed the same prospects at the same time; retry with the same request_id",
    );
  }
  return err;
}

/**
 * Step 1 of a real run, in one short transaction that commits before any email is asked for:
 * tracks every domain of the call (insert … on conflict do nothing, so a new domain has a row to
 * lock), locks the rows in domain order, decides, and claims each email to send in
 * `seo_outreach_send`. A concurrent call for the same domains waits for the commit and then sees the
 * claims; the partial unique index refuses a second unconfirmed email to a domain in any case.
 */
async function claimEmails(
  deps: LinkOutreachDeps,
  plan: Plan,
  scored: readonly Scored[],
  now: Date,
): Promise<Decision> {
  const domains = [...new Set([...plan.prospects.map((p) => p.domain), ...plan.updates.map((u) => u.domain)])].sort();
  try {
    return await deps.db.transaction(async (em) => {
      const inserted = await em.execute<Array<{ domain: string }>>(
        `insert into "${deps.db.schema}"."seo_outreach_prospect" ("domain", "state", "created_at", "updated_at")
         select d, ?, ?, ? from jsonb_array_elements_text(?::jsonb) as t(d) order by d
         on conflict ("domain") do nothing returning "domain"`,
        [RelationshipState.NEW, now, now, JSON.stringify(domains)],
      );
      const rows = await em.find(
        SeoOutreachProspect,
        { domain: { $in: domains } },
        { orderBy: { domain: "asc" }, lockMode: LockMode.PESSIMISTIC_WRITE },
      );
      const rels = new Map(rows.map((r) => [r.domain, relationshipOf(r)] as const));
      const sends = await knownSends(em, plan.requestId, domains, true);
      // An update records what happened to a prospect: it settles another call's unconfirmed email.
      for (const d of new Set(plan.updates.map((u) => u.domain))) {
        const open = sends.unconfirmed.get(d);
        if (open === undefined) continue;
        em.assign(open, {
          state: "settled",
          note: `settled by an update in request ${plan.requestId}`,
          finishedAt: now,
        });
        sends.unconfirmed.delete(d);
      }
      const prospectDomains = new Set(plan.prospects.map((p) => p.domain));
      const tracked = new Set(inserted.map((r) => r.domain).filter((d) => prospectDomains.has(d)));
      const decision = decide(plan, scored, rels, sends, tracked, now);
      for (const rel of decision.rels.values()) {
        if (rel.row !== undefined) assignRelationship(em, rel.row, rel, now);
      }
      addEvents(em, plan.requestId, decision.events, now);
      for (const c of decision.claims) {
        if (!c.fresh) continue;
        em.create(SeoOutreachSend, {
          requestId: plan.requestId,
          domain: c.domain,
          emailRequestId: c.request.requestId,
          state: "sending",
          emailRequest: Buffer.from(toBinary(SendEmailRequestSchema, c.request)),
          attempt: c.attempt,
          claimedAt: now,
          finishedAt: null,
        });
      }
      await em.flush();
      return decision;
    });
  } catch (err) {
    throw raced(err);
  }
}

/** What became of one email. */
type Outcome =
  | { readonly kind: "sent"; readonly response: SendEmailResponse }
  | { readonly kind: "suppressed"; readonly response: SendEmailResponse }
  | { readonly kind: "refused"; readonly note: string }
  | { readonly kind: "unknown"; readonly note: string };

/**
 * Asks the Email agent for one claimed email, outside any transaction. Refusals of this one
 * message (a rejected recipient, a request id already used for other content, bad input) are
 * `refused`; an answer that leaves the outcome open (ABORTED: the Email agent has the message in
 * flight or lost its outcome) is `unknown`; any other failure is returned to fail the call with.
 */
async function ask(emails: Client<typeof EmailService>, claim: Claim): Promise<Outcome | { error: ConnectError }> {
  try {
    const response = await emails.sendEmail(claim.request);
    return response.status === EmailStatus.SUPPRESSED ? { kind: "suppressed", response } : { kind: "sent", response };
  } catch (err) {
    const ce = ConnectError.from(err);
    if (ce.code === Code.FailedPrecondition || ce.code === Code.InvalidArgument || ce.code === Code.AlreadyExists) {
      return { kind: "refused", note: `email not sent: ${ce.rawMessage}` };
    }
    if (ce.code === Code.Aborted) return { kind: "unknown", note: ce.rawMessage };
    return { error: ce };
  }
}

/**
 * Step 3 for one email, in a short transaction of its own: the claim's outcome, the relationship
 * (re-read under its row lock, since other calls may have changed it meanwhile) and its history.
 */
async function recordOutcome(
  deps: LinkOutreachDeps,
  plan: Plan,
  claim: Claim,
  result: Outcome,
  rel: Relationship,
): Promise<void> {
  let outcome: Outcome | { readonly kind: "recorded" } = result;
  const now = deps.now();
  const p = claim.request.to;
  await deps.db.transaction(async (em) => {
    const row = await em.findOneOrFail(
      SeoOutreachProspect,
      { domain: claim.domain },
      { lockMode: LockMode.PESSIMISTIC_WRITE },
    );
    const send = await em.findOneOrFail(SeoOutreachSend, { requestId: plan.requestId, domain: claim.domain });
    const settled = send.state === "settled";
    const from = row.state as RelationshipState;
    const events: PendingEvent[] = [];
    const a = claim.assessment;
    if (send.state === "sent" || send.state === "suppressed" || send.state === "refused") {
      // Another attempt with this request_id, running at the same time, recorded the outcome first.
      if (send.state === "sent") {
        a.contactNow = true;
        a.emailMessageId = send.messageId;
        a.skipReason = "";
      } else {
        a.skipReason = send.note;
      }
      outcome = { kind: "recorded" };
    }
    switch (outcome.kind) {
      case "recorded":
        break;
      case "sent": {
        const { response } = outcome;
        em.assign(send, { state: "sent", messageId: response.messageId, note: "", finishedAt: now });
        // An update that settled this email already recorded the contact; a final state stays.
        const open = from === RelationshipState.NEW || from === RelationshipState.CONTACTED;
        if (!settled) {
          em.assign(row, {
            state: open ? RelationshipState.CONTACTED : from,
            contactAttempts: row.contactAttempts + 1,
            lastContactedAt: now,
            lastMessageId: response.messageId,
            updatedAt: now,
          });
        }
        events.push({
          domain: claim.domain,
          kind: "contacted",
          fromState: from,
          toState: row.state as RelationshipState,
          note: `${claim.attempt > 1 ? `follow-up ${claim.attempt - 1}` : "first email"} to ${p?.address ?? ""}${
            response.status === EmailStatus.WRITTEN_TO_OUTBOX ? " (written to the Email agent's outbox)" : ""
          }${settled ? " (the email had been settled by an update)" : ""}`,
          messageId: response.messageId,
          occurredAt: now,
        });
        a.contactNow = true;
        a.emailMessageId = response.messageId;
        a.skipReason = "";
        break;
      }
      case "suppressed": {
        const note = `recipient on the Email agent's suppression list${
          outcome.response.suppressionReason ? ` (${outcome.response.suppressionReason})` : ""
        }`;
        em.assign(send, { state: "suppressed", note, finishedAt: now });
        em.assign(row, { state: RelationshipState.DO_NOT_CONTACT, updatedAt: now });
        events.push({
          domain: claim.domain,
          kind: "suppressed",
          fromState: from,
          toState: RelationshipState.DO_NOT_CONTACT,
          note,
          occurredAt: now,
        });
        a.skipReason = "recipient is on the email suppression list; marked do-not-contact";
        break;
      }
      case "refused":
        em.assign(send, { state: "refused", note: outcome.note, finishedAt: now });
        events.push({
          domain: claim.domain,
          kind: "send_failed",
          fromState: from,
          toState: from,
          note: outcome.note,
          occurredAt: now,
        });
        a.skipReason = outcome.note;
        break;
      case "unknown":
        if (!settled) em.assign(send, { state: "unknown", note: outcome.note.slice(0, 2000) });
        events.push({
          domain: claim.domain,
          kind: "send_unknown",
          fromState: from,
          toState: from,
          note: outcome.note,
          occurredAt: now,
        });
        a.skipReason = `email outcome unknown (${outcome.note}); not sent again — retry this request_id to settle it, or record what happened with an update`;
        break;
    }
    addEvents(em, plan.requestId, events, now);
    await em.flush();
    rel.state = row.state as RelationshipState;
    rel.contactAttempts = row.contactAttempts;
    rel.lastContactedAt = row.lastContactedAt ?? undefined;
    rel.lastMessageId = row.lastMessageId;
  });
}

/** Gives back claims this attempt made but never asked for (the call is failing before them). */
async function releaseClaims(deps: LinkOutreachDeps, plan: Plan, claims: readonly Claim[]): Promise<void> {
  if (claims.length === 0) return;
  await deps.db.transaction(async (em) => {
    await em.nativeDelete(SeoOutreachSend, {
      requestId: plan.requestId,
      domain: { $in: claims.map((c) => c.domain) },
      state: "sending",
    });
  });
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

/** Runs link outreach; see the file comment for the method. */
export async function manageLinkOutreach(
  deps: LinkOutreachDeps,
  req: ManageLinkOutreachRequest,
  ctx?: CallContext,
): Promise<ManageLinkOutreachResponse> {
  const plan = checkRequest(req);
  const topics = await loadTopics(plan, ctx?.signal ?? new AbortController().signal);
  const scored = scoreProspects(plan, topics);
  const now = deps.now();

  let decision: Decision;
  if (plan.dryRun) {
    // Read only: no rows are locked, claimed or written.
    const em = deps.db.fork();
    const domains = [...new Set([...plan.prospects.map((p) => p.domain), ...plan.updates.map((u) => u.domain)])];
    const rows = await em.find(SeoOutreachProspect, { domain: { $in: domains } }, { orderBy: { domain: "asc" } });
    const rels = new Map(rows.map((r) => [r.domain, relationshipOf(r)] as const));
    const sends = await knownSends(em, plan.requestId, domains, false);
    const tracked = new Set(plan.prospects.map((p) => p.domain).filter((d) => !rels.has(d)));
    decision = decide(plan, scored, rels, sends, tracked, now);
  } else {
    decision = await claimEmails(deps, plan, scored, now);
    // No transaction is open and no row is locked from here on while emails go out.
    const emails = deps.client.agent(EmailService);
    const claims = decision.claims;
    for (let i = 0; i < claims.length; i++) {
      const claim = claims[i] as Claim;
      const rel = decision.rels.get(claim.domain) as Relationship;
      const outcome = await ask(emails, claim);
      if ("error" in outcome) {
        // The email may or may not have gone: it stays claimed as unknown (a retry with this
        // request_id settles it); the emails not asked for yet are given back, and the call fails.
        await recordOutcome(deps, plan, claim, { kind: "unknown", note: outcome.error.rawMessage }, rel);
        await releaseClaims(
          deps,
          plan,
          claims.slice(i + 1).filter((c) => c.fresh),
        );
        throw outcome.error;
      }
      await recordOutcome(deps, plan, claim, outcome, rel);
    }
  }

  const { rels, assessments } = decision;
  for (const a of assessments) {
    const rel = rels.get(a.domain) as Relationship;
    a.state = rel.state;
    a.contactAttempts = rel.contactAttempts;
    if (rel.lastContactedAt) a.lastContactedAt = timestampFromDate(rel.lastContactedAt);
  }
  const contacted = assessments.filter((a) => a.contactNow).length;
  const counts = await stateCounts(deps.db.fork(), deps.db, rels, plan.dryRun);
  deps.log.info("link outreach", {
    requestId: plan.requestId,
    prospects: plan.prospects.length,
    contacted,
    unconfirmed: decision.claims.filter(
      (c) => !c.assessment.contactNow && c.assessment.skipReason.startsWith("email outcome unknown"),
    ).length,
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
}
