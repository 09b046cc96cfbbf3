import { randomUUID } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { simpleParser } from "mailparser";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  EmailStatus,
  EmailTransport,
  type SendEmailRequest,
  SendEmailRequestSchema,
} from "../../../gen/mesh/email/v1/email_service_pb.ts";
import { ConfigError, loadConfig } from "../../../lib/config/index.ts";
import { type Database, openDatabase } from "../../../lib/db/index.ts";
import { InvalidInputError, toConnectError } from "../../../lib/errors/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { domains } from "../../../servers/domains.ts";
import { isolatedDatabase } from "../../../test/support/backbone.ts";
import { failure } from "../../../test/support/expect.ts";
import { freePort } from "../../../test/support/harness.ts";
import { type SmtpSink, startSmtpSink } from "../../../test/support/smtp-sink.ts";
import { createMailTransport, parseMailbox } from "../delivery.ts";
import { EmailMessage, EmailSuppression } from "../entities.ts";
import { requestHash, type SendEmailDeps, sendEmail } from "./send-email.ts";

const log = createLogger("error");
const now = () => new Date("2025-06-02T09:30:00Z");
const defaultFrom = parseMailbox("Marketing Mesh <noreply@mesh.test>");

type RequestInit = MessageInitShape<typeof SendEmailRequestSchema>;

function request(init: Partial<RequestInit> = {}): SendEmailRequest {
  const base: RequestInit = {
    requestId: randomUUID(),
    from: { name: "Dana from Example", address: "dana@example.com" },
    to: { name: "Sam Editor", address: "sam@austinseniorguide.example" },
    subject: "A resource for your Austin senior housing page",
    text: "Hi Sam,\n\nour guide compares assisted living costs in Austin.\n\nDana",
    tag: "seo.link_outreach",
  };
  return create(SendEmailRequestSchema, { ...base, ...init } as RequestInit);
}

/** The Connect error a server would answer with. */
function codeOf(err: unknown): Code {
  return toConnectError(err, () => undefined).code;
}

describe("SendEmail on PostgreSQL with a real SMTP server", () => {
  let dbHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let db: Database;
  let sink: SmtpSink;
  let smtp: SendEmailDeps;

  beforeAll(async () => {
    dbHandle = await isolatedDatabase();
    db = await openDatabase({ url: dbHandle.url, domain: domains.operations, log });
    sink = await startSmtpSink({ reject: (a) => a.startsWith("nobody@") });
    smtp = {
      db,
      bus: { prefix: "send-email-test" },
      now,
      log,
      defaultFrom,
      transport: createMailTransport({ smtpUrl: sink.url, outboxDir: "/nonexistent" }),
    };
  });
  afterAll(async () => {
    await sink?.close();
    await db?.close();
    await dbHandle?.drop();
  });
  beforeEach(() => {
    sink.messages.length = 0;
  });

  const rowOf = (requestId: string) => db.fork().findOne(EmailMessage, { requestId });

  it("sends over SMTP: the server receives the message with our headers and body", async () => {
    const req = request({ replyTo: "replies@example.com" });
    const res = await sendEmail(smtp, req);
    expect(res.status).toBe(EmailStatus.SENT);
    expect(res.transport).toBe(EmailTransport.SMTP);
    expect(res.accepted).toEqual(["sam@austinseniorguide.example"]);
    expect(res.rejected).toEqual([]);
    expect(res.smtpResponse).toMatch(/^250/);
    expect(res.messageId).toMatch(/^<[0-9a-f-]{36}@example\.com>$/);

    expect(sink.messages).toHaveLength(1);
    const got = sink.messages[0];
    expect(got?.envelopeFrom).toBe("dana@example.com");
    expect(got?.envelopeTo).toEqual(["sam@austinseniorguide.example"]);
    const mail = got?.parsed;
    expect(mail?.messageId).toBe(res.messageId);
    expect(mail?.from?.value).toEqual([{ name: "Dana from Example", address: "dana@example.com" }]);
    expect(mail?.to && !Array.isArray(mail.to) ? mail.to.value : []).toEqual([
      { name: "Sam Editor", address: "sam@austinseniorguide.example" },
    ]);
    expect(mail?.replyTo?.value[0]?.address).toBe("replies@example.com");
    expect(mail?.subject).toBe(req.subject);
    expect(mail?.text?.trim()).toBe(req.text);
    expect(mail?.date?.toISOString()).toBe("2025-06-02T09:30:00.000Z");

    const row = await rowOf(req.requestId);
    expect(row).toMatchObject({
      status: "sent",
      transport: "smtp",
      messageId: res.messageId,
      recipient: "sam@austinseniorguide.example",
      subject: req.subject,
      tag: "seo.link_outreach",
      attempts: 1,
    });
  });

  it("answers a replay from the first result without sending again", async () => {
    const req = request();
    const first = await sendEmail(smtp, req);
    const again = await sendEmail(smtp, create(SendEmailRequestSchema, req));
    expect(again).toEqual(first);
    expect(sink.messages).toHaveLength(1);
    expect(await db.fork().count(EmailMessage, { requestId: req.requestId })).toBe(1);
  });

  it("refuses the same request_id with other input (ALREADY_EXISTS) and sends nothing more", async () => {
    const req = request();
    await sendEmail(smtp, req);
    const err = await failure(sendEmail(smtp, create(SendEmailRequestSchema, { ...req, subject: "Another subject" })));
    expect(codeOf(err)).toBe(Code.AlreadyExists);
    expect(sink.messages).toHaveLength(1);
  });

  it("uses the configured default sender when the request names none", async () => {
    const req = request({ from: undefined });
    const res = await sendEmail(smtp, req);
    expect(res.messageId).toMatch(/@mesh\.test>$/);
    expect(sink.messages[0]?.parsed.from?.value).toEqual([{ name: "Marketing Mesh", address: "noreply@mesh.test" }]);
  });

  it("threads a follow-up and adds one-click unsubscribe headers", async () => {
    const req = request({
      inReplyTo: "<first-message@example.com>",
      listUnsubscribeUrl: "https://example.com/unsubscribe?u=42",
      listUnsubscribeMailto: "unsubscribe@example.com",
      html: "<p>Hi Sam</p>",
    });
    await sendEmail(smtp, req);
    const mail = sink.messages[0]?.parsed;
    expect(mail?.inReplyTo).toBe("<first-message@example.com>");
    expect(mail?.references).toBe("<first-message@example.com>");
    // Header lines unfolded (RFC 5322 §2.2.3).
    const raw = (sink.messages[0]?.raw.toString("utf8") ?? "").replace(/\r\n[ \t]+/g, " ");
    expect(raw).toMatch(/^List-Unsubscribe-Post: List-Unsubscribe=One-Click\r$/m);
    expect(raw).toMatch(
      /^List-Unsubscribe: <https:\/\/example\.com\/unsubscribe\?u=42>, <mailto:unsubscribe@example\.com>\r$/m,
    );
    expect(mail?.html).toContain("<p>Hi Sam</p>");
  });

  it("does not send to a suppressed recipient and records it as suppressed", async () => {
    const em = db.fork();
    em.create(EmailSuppression, { address: "gone@example.org", reason: "unsubscribed", createdAt: now() });
    await em.flush();
    const req = request({ to: { name: "", address: "Gone@Example.org" } });
    const res = await sendEmail(smtp, req);
    expect(res.status).toBe(EmailStatus.SUPPRESSED);
    expect(res.transport).toBe(EmailTransport.UNSPECIFIED);
    expect(res.messageId).toBe("");
    expect(res.suppressionReason).toBe("unsubscribed");
    expect(sink.messages).toHaveLength(0);
    expect(await rowOf(req.requestId)).toMatchObject({ status: "suppressed", recipient: "gone@example.org" });
  });

  it("reports a recipient the SMTP server rejects as FAILED_PRECONDITION and records the failure", async () => {
    const req = request({ to: { name: "", address: "nobody@example.net" } });
    const err = await failure(sendEmail(smtp, req));
    expect(codeOf(err)).toBe(Code.FailedPrecondition);
    expect(String((err as Error).message)).toMatch(/rejected the recipient: 550 .*User unknown/);
    expect(sink.messages).toHaveLength(0);
    const row = await rowOf(req.requestId);
    expect(row).toMatchObject({ status: "failed", rejected: ["nobody@example.net"], attempts: 1 });
    expect(row?.error).toMatch(/User unknown/);
    expect(row?.processedAt).toBeNull();

    // A replay of a failed request tries again (and is refused again): still nothing sent.
    expect(codeOf(await failure(sendEmail(smtp, req)))).toBe(Code.FailedPrecondition);
    expect((await rowOf(req.requestId))?.attempts).toBe(2);
  });

  it("reports an unreachable SMTP server as UNAVAILABLE, and a retry with the same request_id sends once", async () => {
    const down: SendEmailDeps = {
      ...smtp,
      transport: createMailTransport({ smtpUrl: `smtp://127.0.0.1:${await freePort()}`, outboxDir: "/nonexistent" }),
    };
    const req = request();
    const err = await failure(sendEmail(down, req));
    expect(err).toBeInstanceOf(ConnectError);
    expect(codeOf(err)).toBe(Code.Unavailable);
    expect((err as Error).message).toMatch(/could not be reached/);
    expect(await rowOf(req.requestId)).toMatchObject({ status: "failed", transport: "smtp" });

    const res = await sendEmail(smtp, req);
    expect(res.status).toBe(EmailStatus.SENT);
    expect(sink.messages).toHaveLength(1);
    expect(sink.messages[0]?.parsed.messageId).toBe(res.messageId);
    expect((await rowOf(req.requestId))?.messageId).toBe(res.messageId);
  });

  it("refuses a request_id that another call is still sending (ABORTED), without sending", async () => {
    const req = request();
    const em = db.fork();
    em.create(EmailMessage, {
      id: randomUUID(),
      requestId: req.requestId,
      requestHash: requestHash(req),
      messageId: "<in-flight@example.com>",
      fromAddress: "dana@example.com",
      recipient: "sam@austinseniorguide.example",
      subject: req.subject,
      status: "sending",
      accepted: [],
      rejected: [],
      createdAt: now(),
      updatedAt: now(),
      processedAt: null,
    });
    await em.flush();
    expect(codeOf(await failure(sendEmail(smtp, req)))).toBe(Code.Aborted);
    expect(sink.messages).toHaveLength(0);
  });

  it.each([
    ["to.address", request({ to: { name: "Sam", address: "not-an-address" } })],
    ["request_id", request({ requestId: "42" })],
    ["subject", request({ subject: "Line one\r\nBcc: everyone@example.com" })],
    ["text", request({ text: "" })],
    ["from.address", request({ from: { name: "Dana", address: "dana" } })],
    ["list_unsubscribe_url", request({ listUnsubscribeUrl: "http://example.com/u" })],
    ["tag", request({ tag: "Not A Tag" })],
  ])("refuses a bad %s with INVALID_ARGUMENT and stores nothing", async (field, req) => {
    const before = await db.fork().count(EmailMessage);
    const err = await failure(sendEmail(smtp, req));
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).field).toBe(field);
    expect(codeOf(err)).toBe(Code.InvalidArgument);
    expect(await db.fork().count(EmailMessage)).toBe(before);
    expect(sink.messages).toHaveLength(0);
  });
});

describe("SendEmail without an SMTP server (outbox)", () => {
  let dbHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let db: Database;
  const outboxDir = join(mkdtempSync(join(tmpdir(), "mesh-outbox-")), "mail-outbox");

  beforeAll(async () => {
    dbHandle = await isolatedDatabase();
    db = await openDatabase({ url: dbHandle.url, domain: domains.operations, log });
  });
  afterAll(async () => {
    await db?.close();
    await dbHandle?.drop();
    rmSync(join(outboxDir, ".."), { recursive: true, force: true });
  });

  it("writes the full RFC 5322 message as <message-id>.eml and says so", async () => {
    const deps: SendEmailDeps = {
      db,
      bus: { prefix: "send-email-test" },
      now,
      log,
      defaultFrom,
      transport: createMailTransport({ smtpUrl: undefined, outboxDir }),
    };
    const req = request();
    const res = await sendEmail(deps, req);
    expect(res.status).toBe(EmailStatus.WRITTEN_TO_OUTBOX);
    expect(res.transport).toBe(EmailTransport.OUTBOX);
    expect(res.outboxFile).toBe(`${res.messageId.slice(1, -1)}.eml`);
    expect(readdirSync(outboxDir)).toEqual([res.outboxFile]);

    const raw = readFileSync(join(outboxDir, res.outboxFile));
    expect(raw.toString("latin1")).toMatch(/\r\n\r\n/); // CRLF line ends, as on the wire
    const mail = await simpleParser(raw);
    expect(mail.messageId).toBe(res.messageId);
    expect(mail.from?.value).toEqual([{ name: "Dana from Example", address: "dana@example.com" }]);
    expect(mail.to && !Array.isArray(mail.to) ? mail.to.value[0]?.address : "").toBe("sam@austinseniorguide.example");
    expect(mail.subject).toBe(req.subject);
    expect(mail.text?.trim()).toBe(req.text);
    expect(await db.fork().findOne(EmailMessage, { requestId: req.requestId })).toMatchObject({
      status: "written_to_outbox",
      transport: "outbox",
      outboxFile: res.outboxFile,
    });

    // A replay writes no second file.
    expect(await sendEmail(deps, req)).toEqual(res);
    expect(readdirSync(outboxDir)).toHaveLength(1);
  });
});

describe("email configuration", () => {
  it("defaults to the outbox under the data directory and a local sender", () => {
    const config = loadConfig({}, { MESH_DATA_DIR: "/srv/mesh" });
    expect(config.smtpUrl).toBeUndefined();
    expect(config.emailOutboxDir).toBe("/srv/mesh/mail-outbox");
    expect(parseMailbox(config.emailFrom)).toEqual({ name: "Marketing Mesh", address: "noreply@localhost" });
  });

  it("reads MESH_SMTP_URL, MESH_EMAIL_OUTBOX_DIR and MESH_EMAIL_FROM", () => {
    const config = loadConfig(
      {},
      {
        MESH_SMTP_URL: "smtp://mailer:secret@127.0.0.1:2525",
        MESH_EMAIL_OUTBOX_DIR: "/var/mail/out",
        MESH_EMAIL_FROM: "outreach@example.com",
      },
    );
    expect(config.smtpUrl).toBe("smtp://mailer:secret@127.0.0.1:2525");
    expect(config.emailOutboxDir).toBe("/var/mail/out");
    expect(parseMailbox(config.emailFrom)).toEqual({ name: "", address: "outreach@example.com" });
  });

  it.each([
    ["MESH_SMTP_URL", "http://mail.example.com"],
    ["MESH_SMTP_URL", "not a url"],
    ["MESH_EMAIL_FROM", "Marketing Mesh"],
  ])("refuses an invalid %s, naming it (and never echoing a password)", (name, value) => {
    let err: unknown;
    try {
      loadConfig({}, { [name]: value });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(name);
  });
});
