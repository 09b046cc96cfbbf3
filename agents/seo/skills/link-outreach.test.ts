import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import pg from "pg";
import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { EmailService } from "../../../gen/mesh/email/v1/email_service_pb.ts";
import {
  type ManageLinkOutreachRequest,
  ManageLinkOutreachRequestSchema,
  type ManageLinkOutreachResponse,
  type ProspectAssessment,
  RelationshipState,
  SeoService,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";
import { defaultPlacement } from "../../../lib/config/index.ts";
import { type Database, openDatabase } from "../../../lib/db/index.ts";
import { InvalidInputError, toConnectError } from "../../../lib/errors/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { createCatalog } from "../../../lib/registry/index.ts";
import { createErrorInterceptor } from "../../../lib/server/index.ts";
import { createMeshClient, type MeshClient } from "../../../lib/transport/index.ts";
import { domains } from "../../../servers/domains.ts";
import { eventually, isolatedDatabase } from "../../../test/support/backbone.ts";
import { failure } from "../../../test/support/expect.ts";
import { type Harness, startHarness } from "../../../test/support/harness.ts";
import { type SmtpSink, startSmtpSink } from "../../../test/support/smtp-sink.ts";
import { createMailTransport, parseMailbox } from "../../email/delivery.ts";
import { EmailMessage, EmailSuppression } from "../../email/entities.ts";
import { sendEmail } from "../../email/skills/send-email.ts";
import { SeoOutreachEvent, SeoOutreachProspect, SeoOutreachSend } from "../outreach-entities.ts";
import { type LinkOutreachDeps, manageLinkOutreach, prospectEmailRequestId } from "./link-outreach.ts";

const log = createLogger("error");
const DAY = 86_400_000;
const start = Date.parse("2025-06-02T09:00:00Z");
let clock = start;
const now = () => new Date(clock);

const TARGET_URL = "https://example.com/assisted-living/austin-tx";
const TARGET =
  "Assisted living and memory care communities in Austin, Texas: costs, care levels, amenities and how to choose a senior living community for your parents.";
const ON_TOPIC =
  "Resources for seniors and caregivers in Austin: senior housing, assisted living communities, memory care and the costs families should expect.";
const OFF_TOPIC = "Reviews of mountain bikes, trail riding gear, suspension forks and the best bike parks in Colorado.";
const TEMPLATE = {
  subject: "A resource for {{domain}} readers",
  body: "Hi {{contact_name}},\n\nyour page {{prospect_url}} helps Austin families; our guide {{target_url}} compares local assisted living costs.\n\nDana",
};

type RequestInit = MessageInitShape<typeof ManageLinkOutreachRequestSchema>;
type ProspectInit = NonNullable<RequestInit["prospects"]>[number];

function outreach(init: Partial<RequestInit> = {}): ManageLinkOutreachRequest {
  const base: RequestInit = {
    requestId: randomUUID(),
    target: { url: TARGET_URL, topicText: TARGET },
    template: TEMPLATE,
    senderEmail: "dana@example.com",
    senderName: "Dana from Example",
  };
  return create(ManageLinkOutreachRequestSchema, { ...base, ...init } as RequestInit);
}

function prospect(domain: string, more: Partial<ProspectInit> = {}): ProspectInit {
  return {
    domain,
    url: `https://${domain}/resources`,
    contactEmail: `editor@${domain}`,
    contactName: "Sam",
    topicText: ON_TOPIC,
    authority: 50,
    ...more,
  };
}

function byDomain(res: ManageLinkOutreachResponse, domain: string): ProspectAssessment {
  const a = res.prospects.find((p) => p.domain === domain);
  if (a === undefined) throw new Error(`no assessment for ${domain}`);
  return a;
}

const stateName = Object.fromEntries(Object.entries(RelationshipState).map(([k, v]) => [v, k]));

function counts(res: ManageLinkOutreachResponse): Record<string, number> {
  return Object.fromEntries(res.stateCounts.map((c) => [stateName[c.state], c.count]));
}

/**
 * A MeshClient whose EmailService is the real SendEmail served in memory (validation and error
 * mapping included). Handlers run in the async context the client was made in, as a server's do:
 * otherwise they would inherit the caller's MikroORM transaction context (both ORMs are "default").
 */
function inProcessEmailClient(emailDb: Database, smtpUrl: string): MeshClient {
  const outside = AsyncLocalStorage.snapshot();
  const deps = {
    db: emailDb,
    // No relay runs on this database: MessageSent events stay in its outbox.
    bus: { prefix: "link-outreach-test" },
    now,
    log,
    transport: createMailTransport({ smtpUrl, outboxDir: "/nonexistent" }),
    defaultFrom: parseMailbox("Marketing Mesh <noreply@mesh.test>"),
  };
  const transport = createRouterTransport(
    (router) => {
      router.service(EmailService, { sendEmail: (req) => outside(() => sendEmail(deps, req)) });
    },
    { router: { interceptors: [createErrorInterceptor(log), createValidateInterceptor()] } },
  );
  return {
    agent: (service) => createClient(service, transport),
    server: () => {
      throw new Error("not used");
    },
    breakerStates: () => ({ content: "closed", operations: "closed", technical: "closed" }),
    close: () => undefined,
  } as MeshClient;
}

/** A mail server of {@link startProbingSmtpSink}. */
interface ProbingSmtpSink {
  url: string;
  /** Message-IDs of the messages accepted, in order. */
  accepted: string[];
  close(): Promise<void>;
}

/**
 * A mail server that, before answering each message's DATA, runs `probe` (and awaits it): what the
 * probe sees is the state of the databases while an email is on the wire, and a probe that waits
 * holds the email there.
 */
async function startProbingSmtpSink(probe: () => Promise<void>): Promise<ProbingSmtpSink> {
  const accepted: string[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    onData(stream, _session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        probe().then(
          () => {
            accepted.push(/^Message-ID:\s*(<[^>\r\n]+>)/im.exec(Buffer.concat(chunks).toString("latin1"))?.[1] ?? "");
            callback(null);
          },
          (err: Error) => callback(err),
        );
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.on("error", reject);
    const net = server.listen(0, "127.0.0.1", () => resolve((net.address() as AddressInfo).port));
  });
  return { url: `smtp://127.0.0.1:${port}`, accepted, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe("prospectEmailRequestId", () => {
  it("is a UUIDv8 derived from the call's request_id and the domain", () => {
    const call = "c4d5e6f7-a8b9-4c0d-9e1f-2a3b4c5d6e7f";
    const id = prospectEmailRequestId(call, "seniors.example");
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(prospectEmailRequestId(call, "seniors.example")).toBe(id);
    expect(prospectEmailRequestId(call, "care.example")).not.toBe(id);
    expect(prospectEmailRequestId(randomUUID(), "seniors.example")).not.toBe(id);
  });
});

describe("seo.link_outreach with the Email agent in process", () => {
  let seoHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let emailHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let seoDb: Database;
  let emailDb: Database;
  let sink: SmtpSink;
  let deps: LinkOutreachDeps;
  let pages: http.Server;
  let pagesBase = "";

  beforeAll(async () => {
    [seoHandle, emailHandle] = await Promise.all([isolatedDatabase(), isolatedDatabase()]);
    [seoDb, emailDb] = await Promise.all([
      openDatabase({ url: seoHandle.url, domain: domains.technical, log }),
      openDatabase({ url: emailHandle.url, domain: domains.operations, log }),
    ]);
    sink = await startSmtpSink({ reject: (a) => a.startsWith("bounce@") });
    deps = { db: seoDb, client: inProcessEmailClient(emailDb, sink.url), now, log };
    pages = http.createServer((req, res) => {
      const html: Record<string, string> = {
        "/ours": `<html><head><title>Assisted living in Austin</title></head><body><nav>Home About</nav><main><h1>Assisted living in Austin, Texas</h1><p>${TARGET}</p></main></body></html>`,
        "/on-topic": `<html><head><title>Austin senior resources</title><meta name="description" content="Senior housing and assisted living in Austin"></head><body><main><p>${ON_TOPIC}</p><script>var x = "bikes bikes bikes";</script></main></body></html>`,
        "/off-topic": `<html><head><title>Trail gear</title></head><body><main><p>${OFF_TOPIC}</p></main></body></html>`,
      };
      const body = html[req.url ?? ""];
      res.writeHead(body === undefined ? 404 : 200, { "content-type": "text/html; charset=utf-8" });
      res.end(body ?? "not found");
    });
    await new Promise<void>((r) => pages.listen(0, "127.0.0.1", r));
    pagesBase = `http://127.0.0.1:${(pages.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => (pages ? pages.close(() => r()) : r()));
    await sink?.close();
    await Promise.all([seoDb?.close(), emailDb?.close()]);
    await Promise.all([seoHandle?.drop(), emailHandle?.drop()]);
  });
  beforeEach(async () => {
    clock = start;
    sink.messages.length = 0;
    await seoDb.fork().nativeDelete(SeoOutreachSend, {});
    await seoDb.fork().nativeDelete(SeoOutreachEvent, {});
    await seoDb.fork().nativeDelete(SeoOutreachProspect, {});
  });

  const stored = async () => ({
    prospects: await seoDb.fork().count(SeoOutreachProspect),
    events: await seoDb.fork().count(SeoOutreachEvent),
  });

  it("ranks an on-topic prospect above an off-topic one of equal authority, and scales by authority", async () => {
    const res = await manageLinkOutreach(
      deps,
      outreach({
        dryRun: true,
        prospects: [
          prospect("bikes.example", { topicText: OFF_TOPIC, authority: 50 }),
          prospect("seniors.example", { topicText: ON_TOPIC, authority: 50 }),
          prospect("big-seniors.example", { topicText: ON_TOPIC, authority: 100 }),
        ],
      }),
    );
    expect(res.prospects.map((p) => [p.domain, p.rank])).toEqual([
      ["big-seniors.example", 1],
      ["seniors.example", 2],
      ["bikes.example", 3],
    ]);
    const on = byDomain(res, "seniors.example");
    const off = byDomain(res, "bikes.example");
    const big = byDomain(res, "big-seniors.example");
    expect(on.topicSimilarity).toBeGreaterThan(0.2);
    expect(on.topicSimilarity).toBeLessThanOrEqual(1);
    expect(off.topicSimilarity).toBeLessThan(0.05);
    expect(on.score).toBeCloseTo(on.topicSimilarity * 0.5, 12);
    // Same text, twice the authority: the same similarity and twice the score.
    expect(big.topicSimilarity).toBeCloseTo(on.topicSimilarity, 12);
    expect(big.score).toBeCloseTo(2 * on.score, 12);
  });

  it("dry run: renders and reports who would be emailed, but sends and records nothing", async () => {
    const res = await manageLinkOutreach(
      deps,
      outreach({
        dryRun: true,
        template: undefined,
        prospects: [prospect("seniors.example", { contactName: "" }), prospect("nomail.example", { contactEmail: "" })],
        updates: [{ domain: "optout.example", state: RelationshipState.DO_NOT_CONTACT }],
      }),
    );
    expect(sink.messages).toHaveLength(0);
    expect(await stored()).toEqual({ prospects: 0, events: 0 });
    const a = byDomain(res, "seniors.example");
    expect(a.contactNow).toBe(true);
    expect(a.emailMessageId).toBe("");
    expect(a.state).toBe(RelationshipState.NEW);
    expect(byDomain(res, "nomail.example")).toMatchObject({ contactNow: false, skipReason: "no contact email" });
    expect(byDomain(res, "optout.example").state).toBe(RelationshipState.DO_NOT_CONTACT);
    expect(res).toMatchObject({ contactedCount: 1, skippedCount: 1, updatedCount: 1 });
    expect(counts(res)).toMatchObject({ NEW: 2, DO_NOT_CONTACT: 1, CONTACTED: 0 });

    // With a template, a dry run shows the rendered email (an empty contact name reads "there").
    const withTemplate = await manageLinkOutreach(
      deps,
      outreach({ dryRun: true, prospects: [prospect("seniors.example", { contactName: "" })] }),
    );
    const r = byDomain(withTemplate, "seniors.example");
    expect(r.renderedSubject).toBe("A resource for seniors.example readers");
    expect(r.renderedBody).toBe(
      `Hi there,\n\nyour page https://seniors.example/resources helps Austin families; our guide ${TARGET_URL} compares local assisted living costs.\n\nDana`,
    );
    expect(sink.messages).toHaveLength(0);
    expect(await stored()).toEqual({ prospects: 0, events: 0 });
  });

  it("emails the selected prospects through the Email agent with the rendered template and records the contact", async () => {
    const req = outreach({
      minScore: 0.1,
      prospects: [
        prospect("seniors.example", { contactName: "Sam Editor", authority: 60 }),
        prospect("bikes.example", { topicText: OFF_TOPIC, authority: 90 }),
      ],
    });
    const res = await manageLinkOutreach(deps, req);
    expect(res.contactedCount).toBe(1);
    expect(res.skippedCount).toBe(1);
    expect(byDomain(res, "bikes.example").skipReason).toMatch(/^score 0\.\d{3} is below min_score 0\.1$/);

    expect(sink.messages).toHaveLength(1);
    const mail = sink.messages[0]?.parsed;
    const a = byDomain(res, "seniors.example");
    expect(a).toMatchObject({
      contactNow: true,
      state: RelationshipState.CONTACTED,
      previousState: RelationshipState.NEW,
      contactAttempts: 1,
      skipReason: "",
    });
    expect(a.lastContactedAt).toEqual(timestampFromDate(now()));
    expect(mail?.messageId).toBe(a.emailMessageId);
    expect(mail?.subject).toBe("A resource for seniors.example readers");
    expect(mail?.text?.trim()).toBe(
      `Hi Sam Editor,\n\nyour page https://seniors.example/resources helps Austin families; our guide ${TARGET_URL} compares local assisted living costs.\n\nDana`,
    );
    expect(mail?.text).not.toContain("{{");
    expect(mail?.from?.value).toEqual([{ name: "Dana from Example", address: "dana@example.com" }]);
    expect(sink.messages[0]?.envelopeTo).toEqual(["editor@seniors.example"]);

    const row = await seoDb.fork().findOneOrFail(SeoOutreachProspect, { domain: "seniors.example" });
    expect(row).toMatchObject({
      state: RelationshipState.CONTACTED,
      contactAttempts: 1,
      lastMessageId: a.emailMessageId,
      contactEmail: "editor@seniors.example",
      targetUrl: TARGET_URL,
    });
    expect(Number(row.score)).toBeCloseTo(a.score, 12);
    const events = await seoDb
      .fork()
      .find(SeoOutreachEvent, { domain: "seniors.example" }, { orderBy: { kind: "asc" } });
    expect(events.map((e) => [e.kind, e.toState])).toEqual([
      ["contacted", RelationshipState.CONTACTED],
      ["tracked", RelationshipState.NEW],
    ]);
    // The Email agent recorded it under the derived request id and the outreach tag.
    const email = await emailDb
      .fork()
      .findOneOrFail(EmailMessage, { requestId: prospectEmailRequestId(req.requestId, "seniors.example") });
    expect(email).toMatchObject({ status: "sent", tag: "seo.link_outreach", messageId: a.emailMessageId });
    expect(counts(res)).toMatchObject({ NEW: 1, CONTACTED: 1 });
  });

  it("never emails twice for one request_id, even when the first call's records were lost", async () => {
    const req = outreach({ prospects: [prospect("seniors.example")] });
    const first = await manageLinkOutreach(deps, req);
    const again = await manageLinkOutreach(deps, create(ManageLinkOutreachRequestSchema, req));
    expect(sink.messages).toHaveLength(1);
    // Answered as the first call was, without a second email.
    expect(byDomain(again, "seniors.example")).toMatchObject({
      contactNow: true,
      contactAttempts: 1,
      emailMessageId: byDomain(first, "seniors.example").emailMessageId,
    });

    // As if the first call's records were lost: the replay asks the Email agent for the same
    // message and gets the first result, not a second email.
    await seoDb.fork().nativeDelete(SeoOutreachSend, {});
    await seoDb.fork().nativeDelete(SeoOutreachEvent, {});
    await seoDb.fork().nativeDelete(SeoOutreachProspect, {});
    const replay = await manageLinkOutreach(deps, create(ManageLinkOutreachRequestSchema, req));
    expect(sink.messages).toHaveLength(1);
    expect(byDomain(replay, "seniors.example")).toMatchObject({
      contactNow: true,
      state: RelationshipState.CONTACTED,
      emailMessageId: byDomain(first, "seniors.example").emailMessageId,
    });
  });

  it("respects the recontact interval and max_follow_ups on later calls, threading follow-ups", async () => {
    const call = (maxFollowUps: number) =>
      manageLinkOutreach(
        deps,
        outreach({
          prospects: [prospect("seniors.example")],
          maxFollowUps,
          recontactInterval: durationFromMs(7 * DAY),
        }),
      );
    const first = byDomain(await call(1), "seniors.example");
    expect(sink.messages).toHaveLength(1);

    clock = start + 3 * DAY;
    expect(byDomain(await call(1), "seniors.example")).toMatchObject({
      contactNow: false,
      skipReason: "contacted 3 days ago (recontact interval 7 days)",
      state: RelationshipState.CONTACTED,
    });
    // With no follow-ups allowed, the same prospect is not emailed again either.
    expect(byDomain(await call(0), "seniors.example").skipReason).toBe("already emailed and max_follow_ups is 0");

    clock = start + 8 * DAY;
    const followUp = byDomain(await call(1), "seniors.example");
    expect(followUp).toMatchObject({ contactNow: true, contactAttempts: 2, state: RelationshipState.CONTACTED });
    expect(sink.messages).toHaveLength(2);
    expect(sink.messages[1]?.parsed.inReplyTo).toBe(first.emailMessageId);

    clock = start + 10 * DAY;
    expect(byDomain(await call(1), "seniors.example").skipReason).toBe("follow-up limit reached (1 of 1 sent)");

    // Follow-ups used up and a full interval without a reply: the prospect never answered.
    clock = start + 16 * DAY;
    const lost = await call(1);
    expect(byDomain(lost, "seniors.example")).toMatchObject({
      contactNow: false,
      skipReason: "no reply after 2 emails; marked lost",
      state: RelationshipState.LOST,
      previousState: RelationshipState.CONTACTED,
    });
    expect(sink.messages).toHaveLength(2);
    expect(counts(lost)).toMatchObject({ LOST: 1, CONTACTED: 0 });
  });

  it("records replies, won links and opt-outs, and never emails a do-not-contact prospect", async () => {
    await manageLinkOutreach(
      deps,
      outreach({ prospects: [prospect("replied.example"), prospect("won.example"), prospect("optout.example")] }),
    );
    expect(sink.messages).toHaveLength(3);
    clock = start + 30 * DAY;
    const res = await manageLinkOutreach(
      deps,
      outreach({
        maxFollowUps: 3,
        prospects: [prospect("replied.example"), prospect("won.example"), prospect("optout.example")],
        updates: [
          { domain: "replied.example", state: RelationshipState.REPLIED, note: "Asked for a shorter blurb" },
          {
            domain: "won.example",
            state: RelationshipState.WON,
            linkUrl: "https://won.example/resources#austin",
            occurredAt: timestampFromDate(new Date(start + 20 * DAY)),
          },
          { domain: "WWW.OptOut.Example.", state: RelationshipState.DO_NOT_CONTACT, note: "Asked not to be emailed" },
          { domain: "never-seen.example", state: RelationshipState.DO_NOT_CONTACT },
        ],
      }),
    );
    expect(sink.messages).toHaveLength(3);
    expect(res).toMatchObject({ contactedCount: 0, skippedCount: 3, updatedCount: 4 });
    expect(byDomain(res, "replied.example")).toMatchObject({
      state: RelationshipState.REPLIED,
      previousState: RelationshipState.CONTACTED,
      skipReason: "replied; follow-ups stop",
    });
    expect(byDomain(res, "won.example")).toMatchObject({
      state: RelationshipState.WON,
      skipReason: "link already won",
    });
    expect(byDomain(res, "optout.example")).toMatchObject({
      state: RelationshipState.DO_NOT_CONTACT,
      skipReason: "do-not-contact",
    });
    // A relationship only updated is reported after the ranked prospects.
    expect(res.prospects.at(-1)).toMatchObject({
      domain: "never-seen.example",
      rank: 0,
      state: RelationshipState.DO_NOT_CONTACT,
    });
    expect(counts(res)).toEqual({ NEW: 0, CONTACTED: 0, REPLIED: 1, WON: 1, LOST: 0, DO_NOT_CONTACT: 2 });

    const won = await seoDb.fork().findOneOrFail(SeoOutreachProspect, { domain: "won.example" });
    expect(won.wonLinkUrl).toBe("https://won.example/resources#austin");
    const wonEvent = await seoDb.fork().findOneOrFail(SeoOutreachEvent, { domain: "won.example", kind: "update" });
    expect(wonEvent).toMatchObject({ fromState: RelationshipState.CONTACTED, toState: RelationshipState.WON });
    expect(wonEvent.occurredAt.toISOString()).toBe(new Date(start + 20 * DAY).toISOString());
    expect(
      (await seoDb.fork().findOneOrFail(SeoOutreachEvent, { domain: "replied.example", kind: "update" })).note,
    ).toBe("Asked for a shorter blurb");

    // Much later, with every follow-up allowed: still nobody emailed.
    clock = start + 90 * DAY;
    await manageLinkOutreach(
      deps,
      outreach({ maxFollowUps: 5, prospects: [prospect("optout.example"), prospect("never-seen.example")] }),
    );
    expect(sink.messages).toHaveLength(3);

    // DO_NOT_CONTACT is final: an update out of it fails and records nothing.
    const before = await stored();
    const err = await failure(
      manageLinkOutreach(deps, outreach({ updates: [{ domain: "optout.example", state: RelationshipState.REPLIED }] })),
    );
    expect(toConnectError(err, () => undefined).code).toBe(Code.FailedPrecondition);
    expect((err as Error).message).toMatch(/^updates\[0\]\.state: optout\.example is DO_NOT_CONTACT/);
    expect(await stored()).toEqual(before);
  });

  it("marks a prospect whose address the Email agent suppresses as do-not-contact", async () => {
    const em = emailDb.fork();
    em.create(EmailSuppression, { address: "editor@gone.example", reason: "unsubscribed", createdAt: now() });
    await em.flush();
    const res = await manageLinkOutreach(deps, outreach({ prospects: [prospect("gone.example")] }));
    expect(sink.messages).toHaveLength(0);
    expect(byDomain(res, "gone.example")).toMatchObject({
      contactNow: false,
      state: RelationshipState.DO_NOT_CONTACT,
      skipReason: "recipient is on the email suppression list; marked do-not-contact",
    });
    expect(res.contactedCount).toBe(0);
    const event = await seoDb.fork().findOneOrFail(SeoOutreachEvent, { domain: "gone.example", kind: "suppressed" });
    expect(event.note).toContain("unsubscribed");
  });

  it("skips a prospect whose address the mail server rejects and still emails the others", async () => {
    const res = await manageLinkOutreach(
      deps,
      outreach({
        prospects: [
          prospect("bouncy.example", { contactEmail: "bounce@bouncy.example", authority: 90 }),
          prospect("seniors.example"),
        ],
      }),
    );
    expect(byDomain(res, "bouncy.example")).toMatchObject({ contactNow: false, state: RelationshipState.NEW });
    expect(byDomain(res, "bouncy.example").skipReason).toMatch(/^email not sent: .*rejected the recipient: 550/);
    expect(byDomain(res, "seniors.example").contactNow).toBe(true);
    expect(sink.messages.map((m) => m.envelopeTo)).toEqual([["editor@seniors.example"]]);
    expect(
      (await seoDb.fork().findOneOrFail(SeoOutreachEvent, { domain: "bouncy.example", kind: "send_failed" })).note,
    ).toMatch(/550/);
  });

  it("honours max_contacts, best score first", async () => {
    const res = await manageLinkOutreach(
      deps,
      outreach({
        maxContacts: 2,
        prospects: [
          prospect("a.example", { authority: 30 }),
          prospect("b.example", { authority: 90 }),
          prospect("c.example", { authority: 60 }),
        ],
      }),
    );
    expect(res.prospects.map((p) => [p.domain, p.contactNow])).toEqual([
      ["b.example", true],
      ["c.example", true],
      ["a.example", false],
    ]);
    expect(byDomain(res, "a.example").skipReason).toBe("max_contacts (2) reached");
    expect(sink.messages).toHaveLength(2);
  });

  it("reads topic texts from the pages when none are given", async () => {
    const res = await manageLinkOutreach(
      deps,
      outreach({
        dryRun: true,
        target: { url: `${pagesBase}/ours` },
        prospects: [
          prospect("on.example", { url: `${pagesBase}/on-topic`, topicText: "" }),
          prospect("off.example", { url: `${pagesBase}/off-topic`, topicText: "" }),
          prospect("gone.example", { url: `${pagesBase}/missing`, topicText: "" }),
        ],
      }),
    );
    const on = byDomain(res, "on.example");
    expect(on.rank).toBe(1);
    expect(on.topicSimilarity).toBeGreaterThan(0.2);
    expect(byDomain(res, "off.example").topicSimilarity).toBeLessThan(0.05);
    expect(byDomain(res, "gone.example")).toMatchObject({
      topicSimilarity: 0,
      contactNow: false,
      skipReason: "topic text unavailable: HTTP 404",
    });

    const err = await failure(
      manageLinkOutreach(
        deps,
        outreach({ dryRun: true, target: { url: `${pagesBase}/missing` }, prospects: [prospect("x.example")] }),
      ),
    );
    expect(toConnectError(err, () => undefined).code).toBe(Code.FailedPrecondition);
    expect((err as Error).message).toMatch(/^target\.url: could not read the page's topic \(HTTP 404\)/);
  });

  it.each([
    ["template", outreach({ template: undefined, prospects: [prospect("seniors.example")] })],
    ["prospects[1].domain", outreach({ prospects: [prospect("seniors.example"), prospect("not a domain!")] })],
    ["prospects", outreach({ prospects: [], updates: [] })],
    ["prospects[1].domain", outreach({ prospects: [prospect("seniors.example"), prospect("www.Seniors.example")] })],
    ["prospects[0].contact_email", outreach({ prospects: [prospect("seniors.example", { contactEmail: "nope" })] })],
    ["prospects[0].topic_text", outreach({ prospects: [prospect("seniors.example", { url: "", topicText: "" })] })],
    [
      "template.body",
      outreach({ template: { subject: "Hi", body: "Hi {{first_name}}" }, prospects: [prospect("a.example")] }),
    ],
    [
      "updates[0].link_url",
      outreach({
        updates: [{ domain: "a.example", state: RelationshipState.REPLIED, linkUrl: "https://a.example/x" }],
      }),
    ],
    ["updates[0].state", outreach({ updates: [{ domain: "a.example", state: RelationshipState.UNSPECIFIED }] })],
    ["request_id", outreach({ requestId: "not-a-uuid", prospects: [prospect("a.example")] })],
    ["sender_email", outreach({ senderEmail: "", prospects: [prospect("a.example")] })],
  ])("refuses a bad %s with INVALID_ARGUMENT and stores nothing", async (field, req) => {
    const err = await failure(manageLinkOutreach(deps, req));
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).field).toBe(field);
    expect(toConnectError(err, () => undefined).code).toBe(Code.InvalidArgument);
    expect(await stored()).toEqual({ prospects: 0, events: 0 });
    expect(sink.messages).toHaveLength(0);
  });

  it("N concurrent calls for the same new domains email each domain exactly once", async () => {
    const domains = ["one.example", "two.example", "three.example"];
    const calls = Array.from({ length: 6 }, () =>
      manageLinkOutreach(deps, outreach({ prospects: domains.map((d) => prospect(d)) })),
    );
    const results = await Promise.all(calls);
    for (const d of domains) {
      expect(sink.messages.filter((m) => m.envelopeTo[0] === `editor@${d}`)).toHaveLength(1);
      const contacted = results.filter((r) => byDomain(r, d).contactNow);
      expect(contacted).toHaveLength(1);
      for (const r of results) {
        const a = byDomain(r, d);
        if (!a.contactNow) expect(a.skipReason).toMatch(/^(contacted less than a minute ago|an email from request )/);
      }
    }
    expect(sink.messages).toHaveLength(domains.length);
    const rows = await seoDb.fork().find(SeoOutreachSend, {});
    expect(rows.map((r) => [r.domain, r.state]).sort()).toEqual(domains.map((d) => [d, "sent"]).sort());
  });

  it("a retry with the same request_id answers as the first call and sends nothing", async () => {
    const req = outreach({
      prospects: [prospect("seniors.example"), prospect("care.example")],
      // Even once the recontact interval has passed with follow-ups allowed, a retry is not a follow-up.
      recontactInterval: durationFromMs(DAY),
      maxFollowUps: 3,
    });
    const first = await manageLinkOutreach(deps, req);
    expect(sink.messages).toHaveLength(2);
    clock += 2 * DAY;
    const again = await manageLinkOutreach(deps, create(ManageLinkOutreachRequestSchema, req));
    expect(sink.messages).toHaveLength(2);
    for (const d of ["seniors.example", "care.example"]) {
      expect(byDomain(again, d)).toMatchObject({
        contactNow: true,
        contactAttempts: 1,
        emailMessageId: byDomain(first, d).emailMessageId,
      });
    }
    expect(again.contactedCount).toBe(2);
  });

  it("holds no transaction or lock while the mail server receives the email", async () => {
    const probes: Array<{ open: unknown[]; locks: unknown[] }> = [];
    const admin = new pg.Client({ connectionString: seoHandle.url });
    await admin.connect();
    const holding = await startProbingSmtpSink(async () => {
      const open = await admin.query(
        `select datname, state, left(query, 120) as query from pg_stat_activity
          where datname = any($1) and pid <> pg_backend_pid() and xact_start is not null`,
        [[seoHandle.name, emailHandle.name]],
      );
      const locks = await admin.query(
        `select l.locktype, l.mode, c.relname from pg_locks l left join pg_class c on c.oid = l.relation
          where l.pid <> pg_backend_pid() and l.database = (select oid from pg_database where datname = $1)
            and l.locktype in ('relation', 'tuple', 'transactionid')`,
        [seoHandle.name],
      );
      probes.push({ open: open.rows, locks: locks.rows });
    });
    try {
      const probing = { ...deps, client: inProcessEmailClient(emailDb, holding.url) };
      // A known prospect (its row would be locked) and a new one.
      await manageLinkOutreach(
        deps,
        outreach({ dryRun: false, prospects: [prospect("known.example", { contactEmail: "" })] }),
      );
      const res = await manageLinkOutreach(
        probing,
        outreach({ prospects: [prospect("known.example"), prospect("fresh.example")] }),
      );
      expect(res.contactedCount).toBe(2);
      expect(probes).toHaveLength(2);
      for (const p of probes) expect(p).toEqual({ open: [], locks: [] });
    } finally {
      await holding.close();
      await admin.end();
    }
  });

  it("an email whose outcome is lost stays unknown: never resent by another call, settled by a retry of its request_id", async () => {
    // The Email agent's answer is lost (as when the connection drops mid-call): the call fails, the
    // claim stays as unknown and the email was not sent.
    const lost: MeshClient = {
      ...deps.client,
      agent: () =>
        ({
          sendEmail: async () => {
            throw new ConnectError("connection reset", Code.Unavailable);
          },
        }) as never,
    };
    const req = outreach({ prospects: [prospect("seniors.example"), prospect("care.example")] });
    const err = await failure(manageLinkOutreach({ ...deps, client: lost }, req));
    expect(ConnectError.from(err).code).toBe(Code.Unavailable);
    expect(sink.messages).toHaveLength(0);
    const sends = await seoDb.fork().find(SeoOutreachSend, {}, { orderBy: { domain: "asc" } });
    // The first (best score; care.example ties and sorts first) is unknown, the one never asked for is given back.
    expect(sends.map((s) => [s.domain, s.state])).toEqual([["care.example", "unknown"]]);

    // Another call does not email it while its outcome is unknown, and says why.
    const other = await manageLinkOutreach(deps, outreach({ prospects: [prospect("care.example")] }));
    expect(byDomain(other, "care.example").contactNow).toBe(false);
    expect(byDomain(other, "care.example").skipReason).toMatch(
      new RegExp(`^an email from request ${req.requestId} claimed at .* is unconfirmed: its outcome is unknown`),
    );
    expect(sink.messages).toHaveLength(0);

    // The retry with the same request_id asks the Email agent for the same message: it never had
    // it, so it sends it now — once.
    const retry = await manageLinkOutreach(deps, create(ManageLinkOutreachRequestSchema, req));
    expect(retry.contactedCount).toBe(2);
    expect(sink.messages.map((m) => m.envelopeTo[0]).sort()).toEqual(["editor@care.example", "editor@seniors.example"]);
    const again = await manageLinkOutreach(deps, create(ManageLinkOutreachRequestSchema, req));
    expect(again.contactedCount).toBe(2);
    expect(sink.messages).toHaveLength(2);
  });

  it("an update settles an unconfirmed email so the relationship can move on", async () => {
    const stuck = outreach({ prospects: [prospect("seniors.example")] });
    const lost: MeshClient = {
      ...deps.client,
      agent: () =>
        ({
          sendEmail: async () => {
            throw new ConnectError("deadline exceeded", Code.DeadlineExceeded);
          },
        }) as never,
    };
    await failure(manageLinkOutreach({ ...deps, client: lost }, stuck));
    // The user checked: the email did arrive. Recording it as a contact settles the claim.
    const res = await manageLinkOutreach(
      deps,
      outreach({ updates: [{ domain: "seniors.example", state: RelationshipState.CONTACTED, note: "it arrived" }] }),
    );
    expect(byDomain(res, "seniors.example")).toMatchObject({ state: RelationshipState.CONTACTED, contactAttempts: 1 });
    const send = await seoDb.fork().findOneOrFail(SeoOutreachSend, { domain: "seniors.example" });
    expect(send.state).toBe("settled");
    expect(sink.messages).toHaveLength(0);
  });
});

describe("seo.link_outreach over the mesh to a real Email agent server", () => {
  let h: Harness;
  let sink: SmtpSink;
  let seoHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let seoDb: Database;
  let client: MeshClient;
  let deps: LinkOutreachDeps;

  beforeAll(async () => {
    sink = await startSmtpSink({ reject: (a) => a.startsWith("bounce@") });
    h = await startHarness({
      servers: ["operations", "technical"],
      env: { MESH_SMTP_URL: sink.url, MESH_EMAIL_FROM: "Outreach <outreach@mesh.test>" },
    });
    seoHandle = await isolatedDatabase();
    seoDb = await openDatabase({ url: seoHandle.url, domain: domains.technical, log });
    client = createMeshClient({
      identity: "technical",
      token: h.tokens.technical as string,
      serverUrls: h.urls,
      placement: { ...defaultPlacement },
      catalog: createCatalog(),
    });
    deps = { db: seoDb, client, now: () => new Date(), log };
  }, 120_000);
  afterAll(async () => {
    client?.close();
    await seoDb?.close();
    await seoHandle?.drop();
    await h?.close();
    await sink?.close();
  });

  it("sends through EmailService.SendEmail on the operations server, once per prospect and request_id", async () => {
    const req = outreach({
      senderEmail: "",
      senderName: "",
      prospects: [prospect("seniors.example"), prospect("care.example")],
    });
    const res = await manageLinkOutreach(deps, req);
    expect(res.contactedCount).toBe(2);
    expect(sink.messages).toHaveLength(2);
    const mail = sink.messages.find((m) => m.envelopeTo[0] === "editor@seniors.example")?.parsed;
    expect(mail?.messageId).toBe(byDomain(res, "seniors.example").emailMessageId);
    // No sender in the request: the Email agent's configured default.
    expect(mail?.from?.value).toEqual([{ name: "Outreach", address: "outreach@mesh.test" }]);
    expect(mail?.subject).toBe("A resource for seniors.example readers");

    // The records lost (as after a failed commit): replaying the call reaches the Email agent again,
    // whose idempotency answers with the first messages.
    await seoDb.fork().nativeDelete(SeoOutreachSend, {});
    await seoDb.fork().nativeDelete(SeoOutreachEvent, {});
    await seoDb.fork().nativeDelete(SeoOutreachProspect, {});
    const replay = await manageLinkOutreach(deps, create(ManageLinkOutreachRequestSchema, req));
    expect(sink.messages).toHaveLength(2);
    expect(byDomain(replay, "seniors.example").emailMessageId).toBe(byDomain(res, "seniors.example").emailMessageId);
  });

  it("SendEmail itself: a replayed request is answered without a second message; bad input names the field", async () => {
    const emails = h.client("operations", EmailService);
    const req = {
      requestId: randomUUID(),
      to: { address: "sam@example.org", name: "Sam" },
      subject: "Hello",
      text: "Hello Sam",
      tag: "test.direct",
    };
    const before = sink.messages.length;
    const first = await emails.sendEmail(req);
    const again = await emails.sendEmail(req);
    expect(again.messageId).toBe(first.messageId);
    expect(sink.messages.length).toBe(before + 1);

    const err = await failure(emails.sendEmail({ ...req, requestId: randomUUID(), to: { address: "not-an-address" } }));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    expect((err as ConnectError).rawMessage).toMatch(/^to\.address: /);

    // A refused recipient: FAILED_PRECONDITION, and the failure stays recorded although the call's
    // own (idempotency) transaction rolled back.
    const bounced = { ...req, requestId: randomUUID(), to: { address: "bounce@example.org" } };
    const refused = await failure(emails.sendEmail(bounced));
    expect(ConnectError.from(refused).code).toBe(Code.FailedPrecondition);
    const pgc = new pg.Client({ connectionString: h.databaseUrl });
    await pgc.connect();
    try {
      const rows = await pgc.query<{ status: string; tag: string }>(
        "select status, tag from operations.email_message where request_id = $1",
        [bounced.requestId],
      );
      expect(rows.rows).toEqual([{ status: "failed", tag: "test.direct" }]);
    } finally {
      await pgc.end();
    }
    expect(sink.messages.length).toBe(before + 1);
  });

  it("serves seo.link_outreach on the technical server: emails via the operations server, replays, refuses bad input", async () => {
    const seo = h.client("technical", SeoService);
    const req = outreach({
      prospects: [prospect("rpc-seniors.example"), prospect("rpc-bikes.example", { topicText: OFF_TOPIC })],
      minScore: 0.05,
    });
    const before = sink.messages.length;
    const res = await seo.manageLinkOutreach(req);
    expect(res.contactedCount).toBe(1);
    expect(byDomain(res, "rpc-seniors.example").state).toBe(RelationshipState.CONTACTED);
    expect(byDomain(res, "rpc-bikes.example").skipReason).toMatch(/below min_score/);
    expect(sink.messages.length).toBe(before + 1);
    expect(sink.messages.at(-1)?.envelopeTo).toEqual(["editor@rpc-seniors.example"]);

    const pgc = new pg.Client({ connectionString: h.databaseUrl });
    await pgc.connect();
    try {
      const tracked = async () =>
        (
          await pgc.query<{ domain: string; state: number }>(
            "select domain, state from technical.seo_outreach_prospect where domain like 'rpc-%' order by domain",
          )
        ).rows;
      expect(await tracked()).toEqual([
        { domain: "rpc-bikes.example", state: RelationshipState.NEW },
        { domain: "rpc-seniors.example", state: RelationshipState.CONTACTED },
      ]);
      // A retry with the same request_id is answered from the stored result: no second email.
      const again = await seo.manageLinkOutreach(req);
      expect(byDomain(again, "rpc-seniors.example").emailMessageId).toBe(
        byDomain(res, "rpc-seniors.example").emailMessageId,
      );
      expect(sink.messages.length).toBe(before + 1);

      // Bad input: INVALID_ARGUMENT naming the field; nothing tracked, nothing sent.
      const bad = outreach({ prospects: [prospect("rpc-new.example"), prospect("www.RPC-new.example")] });
      const err = ConnectError.from(await failure(seo.manageLinkOutreach(bad)));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(/^prospects\[1\]\.domain: /);
      expect(await tracked()).toHaveLength(2);
      expect(sink.messages.length).toBe(before + 1);
    } finally {
      await pgc.end();
    }
  });

  it("fails with UNAVAILABLE when the Email agent cannot be reached, the email left unknown (never resent by another call)", async () => {
    await h.stop("operations");
    const req = outreach({ prospects: [prospect("late.example"), prospect("later.example", { authority: 10 })] });
    const before = sink.messages.length;
    const err = await failure(manageLinkOutreach(deps, req));
    expect(ConnectError.from(err).code).toBe(Code.Unavailable);
    expect(sink.messages.length).toBe(before);
    // The prospects are tracked; the email asked for is unknown, the one never asked for is given back.
    expect(await seoDb.fork().count(SeoOutreachProspect, { domain: { $in: ["late.example", "later.example"] } })).toBe(
      2,
    );
    const sends = await seoDb.fork().find(SeoOutreachSend, { requestId: req.requestId });
    expect(sends.map((s) => [s.domain, s.state])).toEqual([["late.example", "unknown"]]);
  });
});

describe("seo.link_outreach when the technical server is killed (kill -9) while its email is on the wire", () => {
  it("never emails the prospect twice: other calls skip the unconfirmed email, a retry of the request_id settles it", async () => {
    let arrived: () => void = () => undefined;
    const onTheWire = new Promise<void>((r) => {
      arrived = r;
    });
    let release: () => void = () => undefined;
    const released = new Promise<void>((r) => {
      release = r;
    });
    const sink = await startProbingSmtpSink(async () => {
      arrived();
      await released;
    });
    const h = await startHarness({ servers: ["operations", "technical"], env: { MESH_SMTP_URL: sink.url } });
    try {
      const req = outreach({ prospects: [prospect("killed.example")] });
      const first = h
        .client("technical", SeoService)
        .manageLinkOutreach(req)
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      await onTheWire;
      await h.stop("technical", "SIGKILL");
      release();
      expect(await first).toBeDefined(); // the call died with its server
      await eventually(() => (sink.accepted.length === 1 ? true : undefined));
      await h.start("technical");
      const seo = h.client("technical", SeoService);

      // Another call: the email claimed before the kill is unconfirmed, so it is not sent again.
      const other = await seo.manageLinkOutreach(outreach({ prospects: [prospect("killed.example")] }));
      expect(byDomain(other, "killed.example").contactNow).toBe(false);
      expect(byDomain(other, "killed.example").skipReason).toMatch(
        new RegExp(`^an email from request ${req.requestId} claimed at .* is unconfirmed`),
      );

      // The retry of the killed call asks the Email agent for the same message and records its outcome.
      const retry = await seo.manageLinkOutreach(req);
      expect(byDomain(retry, "killed.example")).toMatchObject({
        contactNow: true,
        state: RelationshipState.CONTACTED,
        contactAttempts: 1,
        emailMessageId: sink.accepted[0],
      });
      const later = await seo.manageLinkOutreach(outreach({ prospects: [prospect("killed.example")] }));
      expect(byDomain(later, "killed.example").skipReason).toBe("already emailed and max_follow_ups is 0");
      expect(sink.accepted).toHaveLength(1);
    } finally {
      release();
      await h.close();
      await sink.close();
    }
  }, 180_000);
});
