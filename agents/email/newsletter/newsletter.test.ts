/**
 * Newsletters on PostgreSQL with a real SMTP server (smtp-server): the statistics against known
 * values, the rendered issue, delivery with valid MIME, one-click unsubscribe headers and a DKIM
 * signature that verifies, the unsubscribe endpoint, suppression, the subject-line test deciding
 * on a seeded engagement stream, at most once under concurrent workers, retries and kill -9, DSN and
 * ARF reports, and bad input.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { generateKeyPairSync, randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { create, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import jStat from "jstat";
import { dkimVerify } from "mailauth";
import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { MessageSentSchema } from "../../../gen/mesh/email/v1/email_events_pb.ts";
import {
  AbTestMetric,
  AbTestState,
  CreateNewsletterRequestSchema,
  EngagementKind,
  FeedbackKind,
  GetNewsletterReportRequestSchema,
  IngestMailFeedbackRequestSchema,
  RecordNewsletterEngagementRequestSchema,
  SendNewsletterRequestSchema,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { type Database, openDatabase } from "../../../lib/db/index.ts";
import { toConnectError } from "../../../lib/errors/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { domains } from "../../../servers/domains.ts";
import { isolatedDatabase } from "../../../test/support/backbone.ts";
import { type SmtpSink, startSmtpSink } from "../../../test/support/smtp-sink.ts";
import { createMailTransport, type DkimKey } from "../delivery.ts";
import { createNewsletter } from "../skills/create-newsletter.ts";
import { ingestMailFeedback } from "../skills/ingest-mail-feedback.ts";
import { getNewsletterReport, recordNewsletterEngagement } from "../skills/newsletter-report.ts";
import { sendNewsletter } from "../skills/send-newsletter.ts";
import { personalize, renderIssue, withUtm } from "./render.ts";
import { achievedPower, normalCdf, normalQuantile, sampleSizePerVariant, twoProportionZTest } from "./stats.ts";
import {
  createUnsubscribeRoute,
  loadUnsubscribeKey,
  signUnsubscribeToken,
  verifyUnsubscribeToken,
} from "./unsubscribe.ts";
import { createNewsletterWorker, type NewsletterWorker } from "./worker.ts";

const log = createLogger("error");

type CreateInit = MessageInitShape<typeof CreateNewsletterRequestSchema>;

function newsletter(init: Partial<CreateInit> = {}) {
  const base: CreateInit = {
    requestId: randomUUID(),
    title: "Austin Senior Living News - April 2025",
    segmentId: "austin-families",
    sender: { name: "Example Senior Living", address: "news@example.com" },
    intro: "Hello {{first_name|there}}, here is **this month's** guide. <script>alert(1)</script>",
    sections: [
      {
        heading: "This month's guide",
        body: "Read [our checklist](https://example.com/checklist) before a tour.",
        articles: [
          {
            title: "Choosing Assisted Living in Austin, TX",
            summary: "What assisted living includes, what it costs and what to ask on a tour.",
            url: "https://example.com/guides/assisted-living-austin",
            imageUrl: "https://cdn.example.com/img/austin-dining-room-640w.jpg",
            imageAlt: "Residents sharing lunch in a sunlit dining room",
            ctaText: "Read the guide",
          },
        ],
      },
    ],
    subjectVariants: [{ variantId: "A", subject: "{{first_name|Friend}}, your April guide" }],
    unsubscribe: { url: "https://example.com/email/unsubscribe", mailto: "unsubscribe@example.com" },
    postalAddress: {
      streetLines: ["100 Congress Ave"],
      locality: "Austin",
      region: "TX",
      postalCode: "78701",
      countryCode: "US",
    },
    utmCampaign: "newsletter-2025-04",
  };
  return create(CreateNewsletterRequestSchema, { ...base, ...init } as CreateInit);
}

/** A deterministic uniform generator (mulberry32). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function codeAndField(err: unknown): [Code, string] {
  const e = toConnectError(err, () => undefined);
  return [e.code, e.rawMessage];
}

describe("subject-test statistics against known values", () => {
  it("Φ and Φ⁻¹ match tabulated values", () => {
    expect(normalCdf(1.96)).toBeCloseTo(0.9750021048517795, 12);
    expect(normalCdf(-3)).toBeCloseTo(0.0013498980316301, 12);
    expect(normalQuantile(0.975)).toBeCloseTo(1.959963984540054, 9);
    expect(normalQuantile(0.8)).toBeCloseTo(0.8416212335729143, 9);
  });

  it("the z-test of 200/1000 against 250/1000 is R's prop.test(correct = FALSE): X² = 7.1685", () => {
    const t = twoProportionZTest({ successes: 200, trials: 1000 }, { successes: 250, trials: 1000 });
    // By hand: pooled p = 0.225, SE = √(0.225 · 0.775 · 0.002) = 0.0186748, z = 0.05 / SE.
    expect(t.z).toBeCloseTo(0.05 / Math.sqrt(0.225 * 0.775 * 0.002), 12);
    expect(t.z * t.z).toBeCloseTo(7.168459, 5);
    // The two-sided p-value is the upper tail of χ²(1) at z².
    expect(t.pValue).toBeCloseTo(1 - jStat.chisquare.cdf(t.z * t.z, 1), 10);
    expect(t.pValue).toBeCloseTo(0.007419, 5);
  });

  it("the sample size for 3 % → 4 % at α 0.05, power 0.8 is 5301 per variant (Fleiss, by hand 5300.76)", () => {
    expect(sampleSizePerVariant(0.03, 0.04, 0.05, 0.8)).toBe(5301);
    expect(achievedPower(0.03, 0.04, 0.05, 5301)).toBeCloseTo(0.8, 3);
  });
});

describe("the rendered issue", () => {
  it("renders MJML to HTML with UTM links, escaped Markdown HTML and merge fields", async () => {
    const issue = await renderIssue(newsletter());
    expect(issue.warnings).toEqual([]);
    expect(issue.html).toContain("<!doctype html>");
    expect(issue.html).toContain("utm_source=newsletter&amp;utm_medium=email&amp;utm_campaign=newsletter-2025-04");
    expect(issue.html).toContain("https://example.com/checklist?utm_source=newsletter");
    expect(issue.html).not.toContain("<script>");
    expect(issue.text).toContain(
      "Read the guide: https://example.com/guides/assisted-living-austin?utm_source=newsletter&utm_medium=email&utm_campaign=newsletter-2025-04",
    );
    const html = personalize(issue.html, { first_name: "<b>Ann</b> & Co" }, "html");
    expect(html).toContain("Hello &lt;b&gt;Ann&lt;/b&gt; &amp; Co,");
    expect(personalize(issue.html, {}, "html")).toContain("Hello there,");
    expect(withUtm("https://example.com/?utm_source=partner", "c")).toBe(
      "https://example.com/?utm_source=partner&utm_medium=email&utm_campaign=c",
    );
  });

  it("signs unsubscribe tokens that verify, and refuses altered ones", () => {
    const key = Buffer.alloc(32, 7);
    const id = randomUUID();
    const token = signUnsubscribeToken(key, id);
    expect(verifyUnsubscribeToken(key, token)).toEqual({ kind: "newsletter", sendId: id });
    expect(verifyUnsubscribeToken(Buffer.alloc(32, 8), token)).toBeUndefined();
    const other = signUnsubscribeToken(key, randomUUID());
    expect(verifyUnsubscribeToken(key, `${token.split(".")[0]}.${other.split(".")[1]}`)).toBeUndefined();
    // A follow-up step's token signs under its own context: neither kind passes for the other.
    const followUp = signUnsubscribeToken(key, id, "follow_up");
    expect(followUp).toMatch(/^f[0-9a-f]{32}\./);
    expect(verifyUnsubscribeToken(key, followUp)).toEqual({ kind: "follow_up", sendId: id });
    expect(verifyUnsubscribeToken(key, followUp.slice(1))).toBeUndefined();
    expect(verifyUnsubscribeToken(key, `f${token}`)).toBeUndefined();
  });
});

describe("newsletters on PostgreSQL with a real SMTP server", () => {
  let dbHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let db: Database;
  let sink: SmtpSink;
  let clock = new Date("2025-04-01T09:00:00Z");
  const now = () => clock;
  const dkim: DkimKey & { publicKey: string } = (() => {
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    return {
      domain: "example.com",
      selector: "mesh2025",
      privateKey: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      publicKey: publicKey.export({ type: "spki", format: "der" }).toString("base64"),
    };
  })();
  const workers: NewsletterWorker[] = [];
  const transports: { close(): void }[] = [];

  function worker(opts: { dkim?: DkimKey } = {}): NewsletterWorker {
    const transport = createMailTransport({
      smtpUrl: sink.url,
      outboxDir: "/nonexistent",
      poolConnections: 4,
      dkim: opts.dkim,
    });
    transports.push(transport);
    const w = createNewsletterWorker({
      db,
      bus: { prefix: "newsletter-test" },
      transport,
      log,
      now,
      nodeId: `w${workers.length}`,
      key: () => loadUnsubscribeKey(db, undefined, now),
      batch: 50,
    });
    workers.push(w);
    return w;
  }

  /** Runs rounds until a round finds nothing to do. */
  async function drain(...ws: NewsletterWorker[]): Promise<void> {
    for (;;) {
      const rs = await Promise.all(ws.map((w) => w.round()));
      if (rs.every((r) => r.claimed === 0 && r.decided === 0 && r.expired === 0)) return;
    }
  }

  /** The `MessageSent` events the workers enqueued for a campaign (no relay runs: they stay in the outbox). */
  async function announced(campaignId: string) {
    const rows = await sql<{ payload: Buffer }>(
      `select payload from operations.outbox where subject = 'newsletter-test.events.email.message_sent'`,
    );
    return rows.map((r) => fromBinary(MessageSentSchema, r.payload)).filter((e) => e.campaignId === campaignId);
  }

  async function sql<T>(text: string, params: unknown[] = []): Promise<T[]> {
    const c = new pg.Client({ connectionString: dbHandle.url });
    await c.connect();
    try {
      return (await c.query(text, params)).rows as T[];
    } finally {
      await c.end();
    }
  }

  const recipients = (n: number, prefix: string) =>
    Array.from({ length: n }, (_, i) => ({
      address: `${prefix}${i}@example.org`,
      name: `Reader ${i}`,
      fields: { first_name: `R${i}` },
    }));

  beforeAll(async () => {
    dbHandle = await isolatedDatabase();
    db = await openDatabase({ url: dbHandle.url, domain: domains.operations, log });
    sink = await startSmtpSink({ reject: (a) => a.startsWith("nobody") });
  });
  afterAll(async () => {
    for (const t of transports) t.close();
    await sink?.close();
    await db?.close();
    await dbHandle?.drop();
  });
  beforeEach(() => {
    sink.messages.length = 0;
    clock = new Date("2025-04-01T09:00:00Z");
  });

  it("sends valid MIME with one-click unsubscribe headers and a DKIM signature that verifies; skips suppressed and refused addresses", async () => {
    const created = await createNewsletter({ db, now, dkimConfigured: true }, newsletter());
    expect(created.headers.map((h) => h.name)).toEqual(["List-Unsubscribe", "List-Unsubscribe-Post"]);
    await sql(
      `insert into operations.email_suppression (address, reason, created_at) values ('gone@example.org', 'manual', now())`,
    );
    const res = await sendNewsletter(
      { db, now },
      create(SendNewsletterRequestSchema, {
        requestId: randomUUID(),
        campaignId: created.campaignId,
        recipients: [
          { address: "Ann@Example.org", name: "Ann", fields: { first_name: "<Ann>" } },
          { address: "gone@example.org" },
          { address: "nobody@example.org" },
        ],
      }),
    );
    expect([res.queued, res.suppressed, res.duplicates]).toEqual([2, 1, 0]);
    await drain(worker({ dkim }));
    expect(sink.messages).toHaveLength(1);
    const [m] = sink.messages;
    if (!m) throw new Error("no message");
    expect(m.envelopeTo.map((a) => a.toLowerCase())).toEqual(["ann@example.org"]);
    expect(m.parsed.subject).toBe("<Ann>, your April guide");
    // Only the message that went out is announced, with the subject as sent.
    expect((await announced(created.campaignId)).map((e) => [e.recipient, e.subject, e.messageId])).toEqual([
      ["ann@example.org", "<Ann>, your April guide", m.parsed.messageId],
    ]);
    expect(m.parsed.headers.get("content-type")).toMatchObject({ value: "multipart/alternative" });
    expect(m.parsed.text).toContain("Hello <Ann>, here is");
    expect(m.parsed.html).toContain("Hello &lt;Ann&gt;, here is");
    const raw = m.raw.toString("utf8");
    const lu =
      /^List-Unsubscribe: (.*)$/im
        .exec(raw.replace(/\r\n(?=[ \t])/g, ""))?.[1]
        ?.replace(/\s+/g, " ")
        .trim() ?? "";
    expect(lu).toMatch(
      /^<https:\/\/example\.com\/email\/unsubscribe\?token=[0-9a-f]{32}\.[A-Za-z0-9_-]{43}>, <mailto:unsubscribe@example\.com>$/,
    );
    expect(raw).toMatch(/^List-Unsubscribe-Post: List-Unsubscribe=One-Click\r$/m);
    // DKIM (RFC 6376) verified by mailauth against the public key a stub resolver serves.
    const verified = await dkimVerify(m.raw, {
      resolver: async (name: string, type: string) => {
        if (type === "TXT" && name === "mesh2025._domainkey.example.com")
          return [[`v=DKIM1; k=rsa; p=${dkim.publicKey}`]];
        throw Object.assign(new Error(`no ${type} for ${name}`), { code: "ENOTFOUND" });
      },
    });
    expect(verified.results[0]?.status.result).toBe("pass");
    expect(verified.results[0]?.signingHeaders?.keys.toLowerCase()).toContain("list-unsubscribe-post");
    const report = await getNewsletterReport(
      { db },
      create(GetNewsletterReportRequestSchema, { campaignId: created.campaignId }),
    );
    expect([report.recipients, report.sent, report.suppressed, report.failed, report.bounced]).toEqual([
      3n,
      1n,
      1n,
      1n,
      1n,
    ]);
    // The refused address is now suppressed too.
    expect(await sql(`select address from operations.email_suppression order by address`)).toEqual([
      { address: "gone@example.org" },
      { address: "nobody@example.org" },
    ]);
  });

  it("unsubscribes through the endpoint with the signed URL, refuses forged tokens, and later sends skip the address", async () => {
    const created = await createNewsletter({ db, now, dkimConfigured: false }, newsletter());
    await sendNewsletter(
      { db, now },
      create(SendNewsletterRequestSchema, {
        requestId: randomUUID(),
        campaignId: created.campaignId,
        recipients: [{ address: "leaving@example.org" }],
      }),
    );
    await drain(worker());
    const raw = sink.messages[0]?.raw.toString("utf8") ?? "";
    const url = new URL(/List-Unsubscribe: <([^>]+)>/.exec(raw.replace(/\r\n(?=[ \t])/g, ""))?.[1] ?? "");
    const route = createUnsubscribeRoute({ db, key: () => loadUnsubscribeKey(db, undefined, now), now, log });
    const server = http.createServer((req, res) => {
      void route(req, res).then((handled) => {
        if (!handled) res.writeHead(404).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const token = url.searchParams.get("token") ?? "";
      const forged = `${token.slice(0, 33)}${token[33] === "A" ? "B" : "A"}${token.slice(34)}`;
      const post = (t: string) =>
        fetch(`${base}${url.pathname}?token=${encodeURIComponent(t)}`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: "List-Unsubscribe=One-Click",
        });
      expect((await post(forged)).status).toBe(403);
      expect((await fetch(`${base}${url.pathname}?token=${encodeURIComponent(token)}`)).status).toBe(200); // GET: a form only
      expect(
        await sql(`select address from operations.email_suppression where address = 'leaving@example.org'`),
      ).toEqual([]);
      expect((await post(token)).status).toBe(200);
      expect(
        await sql(`select reason from operations.email_suppression where address = 'leaving@example.org'`),
      ).toEqual([{ reason: `unsubscribed (one-click, campaign ${created.campaignId})` }]);
    } finally {
      server.close();
    }
    const next = await createNewsletter({ db, now, dkimConfigured: false }, newsletter());
    const res = await sendNewsletter(
      { db, now },
      create(SendNewsletterRequestSchema, {
        requestId: randomUUID(),
        campaignId: next.campaignId,
        recipients: [{ address: "leaving@example.org" }, { address: "staying@example.org" }],
      }),
    );
    expect(res.suppressed).toBe(1);
    sink.messages.length = 0;
    await drain(worker());
    expect(sink.messages.map((m) => m.envelopeTo[0])).toEqual(["staying@example.org"]);
    const first = await getNewsletterReport(
      { db },
      create(GetNewsletterReportRequestSchema, { campaignId: created.campaignId }),
    );
    expect(first.unsubscribed).toBe(1n);
  });

  it("sends each recipient at most once with three concurrent workers and a retried request", async () => {
    const created = await createNewsletter({ db, now, dkimConfigured: false }, newsletter());
    const req = create(SendNewsletterRequestSchema, {
      requestId: randomUUID(),
      campaignId: created.campaignId,
      recipients: recipients(300, "many"),
    });
    expect((await sendNewsletter({ db, now }, req)).queued).toBe(300);
    const again = await sendNewsletter({ db, now }, req);
    expect([again.queued, again.duplicates]).toEqual([0, 300]);
    const other = await sendNewsletter(
      { db, now },
      create(SendNewsletterRequestSchema, { ...req, requestId: randomUUID() }),
    );
    expect([other.queued, other.duplicates]).toEqual([0, 300]);
    await drain(worker(), worker(), worker());
    const to = sink.messages.map((m) => m.envelopeTo[0]);
    expect(to).toHaveLength(300);
    expect(new Set(to).size).toBe(300);
    // One MessageSent per message sent, whichever worker sent it.
    const events = await announced(created.campaignId);
    expect(events).toHaveLength(300);
    expect(new Set(events.map((e) => e.messageId)).size).toBe(300);
  });

  it("resumes after kill -9 of a worker mid-send without sending anyone a second copy", async () => {
    const created = await createNewsletter({ db, now, dkimConfigured: false }, newsletter());
    await sendNewsletter(
      { db, now: () => new Date() },
      create(SendNewsletterRequestSchema, {
        requestId: randomUUID(),
        campaignId: created.campaignId,
        recipients: recipients(400, "crash"),
      }),
    );
    const child: ChildProcess = spawn(process.execPath, [new URL("./crash-child.ts", import.meta.url).pathname], {
      env: { ...process.env, MESH_TEST_DATABASE_URL: dbHandle.url, MESH_TEST_SMTP_URL: sink.url },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise((r) => child.on("exit", r));
    for (let i = 0; i < 2000 && sink.messages.length < 60; i++) await new Promise((r) => setTimeout(r, 5));
    child.kill("SIGKILL");
    await exited;
    const inFlight = await sql<{ n: string }>(
      `select count(*) as n from operations.email_newsletter_send where campaign_id = $1 and status = 'sending'`,
      [created.campaignId],
    );
    // The resumed worker sees the claims only once they are older than the claim timeout.
    clock = new Date(Date.now() + 10 * 60_000);
    await drain(worker());
    const rows = await sql<{ recipient: string; status: string }>(
      `select recipient, status from operations.email_newsletter_send where campaign_id = $1`,
      [created.campaignId],
    );
    const received = sink.messages.map((m) => (m.envelopeTo[0] as string).toLowerCase());
    expect(new Set(received).size).toBe(received.length); // nobody got two copies
    const sent = new Set(rows.filter((r) => r.status === "sent").map((r) => r.recipient));
    const unknown = new Set(rows.filter((r) => r.status === "unknown").map((r) => r.recipient));
    expect(sent.size + unknown.size).toBe(400);
    expect(unknown.size).toBe(Number(inFlight[0]?.n));
    for (const r of sent) expect(received).toContain(r);
    for (const r of received) expect(sent.has(r) || unknown.has(r)).toBe(true);
  });

  async function abCampaign(seed: number, rates: [number, number]) {
    const created = await createNewsletter(
      { db, now, dkimConfigured: false },
      newsletter({
        audienceSize: 2000n,
        subjectVariants: [
          { variantId: "A", subject: "Your April guide" },
          { variantId: "B", subject: "What does assisted living cost in Austin?" },
        ],
        abTest: {
          metric: AbTestMetric.CLICK_RATE,
          baselineRate: 0.05,
          minimumDetectableEffect: 0.05,
          alpha: 0.05,
          power: 0.8,
          testDuration: durationFromMs(4 * 3_600_000),
        },
      }),
    );
    // By hand: n = (1.96·√(2·0.075·0.925) + 0.8416·√(0.0475 + 0.09))² / 0.05² = 434.5 → 435.
    expect(created.abTestPlan?.sampleSizePerVariant).toBe(435n);
    const res = await sendNewsletter(
      { db, now },
      create(SendNewsletterRequestSchema, {
        requestId: randomUUID(),
        campaignId: created.campaignId,
        recipients: recipients(2000, `ab${seed}-`),
      }),
    );
    expect(res.testFraction).toBeCloseTo(870 / 2000, 12);
    expect(res.inTest + res.heldForWinner).toBe(2000);
    const w = worker();
    await drain(w);
    expect(sink.messages).toHaveLength(res.inTest);
    // Engagement of the test sends: clicks drawn with the variants' true rates from a seeded stream,
    // in recipient order (arrival order over pooled connections varies from run to run).
    const rand = seeded(seed);
    const byRecipient = [...sink.messages].sort((x, y) =>
      (x.envelopeTo[0] as string).localeCompare(y.envelopeTo[0] as string),
    );
    const events = byRecipient.flatMap((m) => {
      const rate = m.parsed.subject === "Your April guide" ? rates[0] : rates[1];
      return rand() < rate
        ? [{ campaignId: created.campaignId, address: m.envelopeTo[0] as string, kind: EngagementKind.CLICK }]
        : [];
    });
    const rec = await recordNewsletterEngagement(
      { db, now },
      create(RecordNewsletterEngagementRequestSchema, { requestId: randomUUID(), events }),
    );
    expect(rec.recorded).toBe(events.length);
    return { created, res, w };
  }

  it("decides the subject test by the z-test once significant and rolls the winner out to the rest", async () => {
    const { created, res, w } = await abCampaign(42, [0.04, 0.14]);
    const before = await getNewsletterReport(
      { db },
      create(GetNewsletterReportRequestSchema, { campaignId: created.campaignId }),
    );
    const [a, b] = before.variants;
    const expected = twoProportionZTest(
      { successes: Number(a?.clicks), trials: Number(a?.delivered) },
      { successes: Number(b?.clicks), trials: Number(b?.delivered) },
    );
    expect(expected.pValue).toBeLessThan(0.05);
    sink.messages.length = 0;
    await drain(w); // decides (well within the window) and sends the rest
    const report = await getNewsletterReport(
      { db },
      create(GetNewsletterReportRequestSchema, { campaignId: created.campaignId }),
    );
    expect(report.abTest).toMatchObject({
      state: AbTestState.DECIDED,
      winnerVariantId: "B",
      significant: true,
      reason: "significant",
    });
    expect(report.abTest?.z).toBeCloseTo(expected.z, 10);
    expect(report.abTest?.pValue).toBeCloseTo(expected.pValue, 12);
    expect(sink.messages).toHaveLength(res.heldForWinner);
    expect(new Set(sink.messages.map((m) => m.parsed.subject))).toEqual(
      new Set(["What does assisted living cost in Austin?"]),
    );
    expect(report.sent).toBe(2000n);
  });

  it("waits while the test is not significant and takes the best observed variant when the window closes", async () => {
    const { created, w } = await abCampaign(8, [0.06, 0.06]);
    await drain(w);
    let report = await getNewsletterReport(
      { db },
      create(GetNewsletterReportRequestSchema, { campaignId: created.campaignId }),
    );
    expect(report.abTest?.state).toBe(AbTestState.TESTING);
    expect(report.pending).toBeGreaterThan(0n);
    clock = new Date(clock.getTime() + 4 * 3_600_000);
    await drain(w);
    report = await getNewsletterReport(
      { db },
      create(GetNewsletterReportRequestSchema, { campaignId: created.campaignId }),
    );
    expect(report.abTest).toMatchObject({ state: AbTestState.DECIDED, significant: false, reason: "window closed" });
    const [a, b] = report.variants;
    const best =
      Number(b?.clicks) / Number(b?.testDelivered) > Number(a?.clicks) / Number(a?.testDelivered) ? "B" : "A";
    expect(report.abTest?.winnerVariantId).toBe(best);
    expect(report.pending).toBe(0n);
  });

  const dsn = (messageId: string, to: string, status: string, action = "failed") =>
    Buffer.from(
      [
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>",
        "To: news@example.com",
        "Subject: Undelivered Mail Returned to Sender",
        "Date: Tue, 01 Apr 2025 10:00:00 +0000",
        "Message-ID: <dsn-1@mx.example.org>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"',
        "",
        "--B1",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "Your message could not be delivered.",
        "",
        "--B1",
        "Content-Type: message/delivery-status",
        "",
        "Reporting-MTA: dns; mx.example.org",
        "Arrival-Date: Tue, 01 Apr 2025 09:59:58 +0000",
        "",
        `Final-Recipient: rfc822; ${to}`,
        `Original-Recipient: rfc822;${to}`,
        `Action: ${action}`,
        `Status: ${status}`,
        "Remote-MTA: dns; mx.example.org",
        `Diagnostic-Code: smtp; 550 ${status} <${to}>:`,
        " Recipient address rejected: User unknown",
        "",
        "--B1",
        "Content-Type: text/rfc822-headers",
        "",
        "From: Example Senior Living <news@example.com>",
        `To: ${to}`,
        "Subject: Your April guide",
        `Message-ID: ${messageId}`,
        "",
        "--B1--",
        "",
      ].join("\r\n"),
    );

  const arf = (messageId: string, to: string) =>
    Buffer.from(
      [
        "From: <abuse@isp.example>",
        "To: <fbl@example.com>",
        "Subject: FW: Your April guide",
        "Date: Tue, 01 Apr 2025 11:00:00 +0000",
        "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=feedback-report; boundary="part1"',
        "",
        "--part1",
        "Content-Type: text/plain; charset=US-ASCII",
        "",
        "This is an email abuse report for an email message received from IP 192.0.2.1.",
        "",
        "--part1",
        "Content-Type: message/feedback-report",
        "",
        "Feedback-Type: abuse",
        "User-Agent: SomeGenerator/1.0",
        "Version: 1",
        "Original-Mail-From: <news@example.com>",
        `Original-Rcpt-To: <${to}>`,
        "Arrival-Date: Tue, 01 Apr 2025 10:30:00 +0000",
        "Source-IP: 192.0.2.1",
        "Reported-Domain: example.com",
        "",
        "--part1",
        "Content-Type: message/rfc822",
        "Content-Disposition: inline",
        "",
        "From: Example Senior Living <news@example.com>",
        `To: ${to}`,
        "Subject: Your April guide",
        `Message-ID: ${messageId}`,
        "Date: Tue, 01 Apr 2025 09:00:00 +0000",
        "",
        "Hello",
        "",
        "--part1--",
        "",
      ].join("\r\n"),
    );

  it("turns DSN hard bounces and ARF complaints into suppressions counted on the campaign; soft bounces only recorded", async () => {
    const created = await createNewsletter({ db, now, dkimConfigured: false }, newsletter());
    await sendNewsletter(
      { db, now },
      create(SendNewsletterRequestSchema, {
        requestId: randomUUID(),
        campaignId: created.campaignId,
        recipients: [
          { address: "bounce@example.org" },
          { address: "soft@example.org" },
          { address: "angry@example.org" },
        ],
      }),
    );
    await drain(worker());
    const ids = Object.fromEntries(
      (
        await sql<{ recipient: string; message_id: string }>(
          `select recipient, message_id from operations.email_newsletter_send where campaign_id = $1`,
          [created.campaignId],
        )
      ).map((r) => [r.recipient, r.message_id]),
    );
    const ingest = (raw: Buffer) =>
      ingestMailFeedback(
        { db, now },
        create(IngestMailFeedbackRequestSchema, { requestId: randomUUID(), rawMessage: raw }),
      );
    const hard = await ingest(dsn(ids["bounce@example.org"] as string, "bounce@example.org", "5.1.1"));
    expect(hard).toMatchObject({
      kind: FeedbackKind.DELIVERY_STATUS,
      campaignId: created.campaignId,
      originalMessageId: ids["bounce@example.org"],
    });
    expect(hard.recipients[0]).toMatchObject({
      address: "bounce@example.org",
      action: "failed",
      status: "5.1.1",
      suppressed: true,
    });
    expect(hard.recipients[0]?.diagnostic).toBe(
      "smtp; 550 5.1.1 <bounce@example.org>: Recipient address rejected: User unknown",
    );
    const soft = await ingest(dsn(ids["soft@example.org"] as string, "soft@example.org", "4.2.2", "delayed"));
    expect(soft.recipients[0]?.suppressed).toBe(false);
    const complaint = await ingest(arf(ids["angry@example.org"] as string, "angry@example.org"));
    expect(complaint).toMatchObject({ kind: FeedbackKind.COMPLAINT, campaignId: created.campaignId });
    expect(complaint.recipients[0]).toMatchObject({ address: "angry@example.org", action: "abuse", suppressed: true });
    const report = await getNewsletterReport(
      { db },
      create(GetNewsletterReportRequestSchema, { campaignId: created.campaignId }),
    );
    expect([report.sent, report.bounced, report.complained]).toEqual([3n, 1n, 1n]);
    const suppressed = await sql<{ address: string; reason: string }>(
      `select address, reason from operations.email_suppression where address in ('bounce@example.org', 'soft@example.org', 'angry@example.org') order by address`,
    );
    expect(suppressed.map((r) => r.address)).toEqual(["angry@example.org", "bounce@example.org"]);
    const notReport = Buffer.from(
      "From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\nContent-Type: text/plain\r\n\r\nhello\r\n",
    );
    expect(codeAndField(await ingest(notReport).catch((e: unknown) => e))).toEqual([
      Code.InvalidArgument,
      expect.stringMatching(/^raw_message: not a delivery status notification/),
    ]);
  });

  it("refuses bad input with INVALID_ARGUMENT naming the field, writing nothing", async () => {
    const count = async () =>
      Number((await sql<{ n: string }>(`select count(*) as n from operations.email_newsletter`))[0]?.n);
    const before = await count();
    const bad = newsletter({ sender: { name: "X", address: "not-an-email" } });
    expect(
      codeAndField(await createNewsletter({ db, now, dkimConfigured: false }, bad).catch((e: unknown) => e)),
    ).toEqual([Code.InvalidArgument, expect.stringMatching(/^sender\.address: /)]);
    const noTest = newsletter({
      subjectVariants: [
        { variantId: "A", subject: "a" },
        { variantId: "B", subject: "b" },
      ],
    });
    expect(
      codeAndField(await createNewsletter({ db, now, dkimConfigured: false }, noTest).catch((e: unknown) => e)),
    ).toEqual([Code.InvalidArgument, expect.stringMatching(/^ab_test: /)]);
    expect(await count()).toBe(before);
    const created = await createNewsletter({ db, now, dkimConfigured: false }, newsletter());
    const sendBad = create(SendNewsletterRequestSchema, {
      requestId: randomUUID(),
      campaignId: created.campaignId,
      recipients: [{ address: "ok@example.org" }, { address: "nope" }],
    });
    expect(codeAndField(await sendNewsletter({ db, now }, sendBad).catch((e: unknown) => e))).toEqual([
      Code.InvalidArgument,
      expect.stringMatching(/^recipients\[1\]\.address: /),
    ]);
    expect(
      await sql(`select 1 from operations.email_newsletter_send where campaign_id = $1`, [created.campaignId]),
    ).toEqual([]);
    const missing = create(SendNewsletterRequestSchema, {
      requestId: randomUUID(),
      campaignId: "nl_missing",
      recipients: [{ address: "ok@example.org" }],
    });
    expect(codeAndField(await sendNewsletter({ db, now }, missing).catch((e: unknown) => e))[0]).toBe(Code.NotFound);
  });
});
