/**
 * How the Email agent's messages leave the process: nodemailer over SMTP to the configured server,
 * or, with no server configured, the complete RFC 5322 message written as `<message-id>.eml` to
 * the outbox folder (any mail client opens it; a relay can pick it up). Nothing pretends success:
 * a message either reached the SMTP server, or is a file on disk, or the send fails.
 */
import { randomUUID } from "node:crypto";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createTransport, type SendMailOptions } from "nodemailer";
import addressparser from "nodemailer/lib/addressparser";

/** A mailbox: display name ("" for none) and address. */
export interface Mailbox {
  /** Display name; "" sends the bare address. */
  readonly name: string;
  /** Address. */
  readonly address: string;
}

/** A composed message, ready for a transport. */
export interface OutgoingEmail {
  /** RFC 5322 Message-ID with angle brackets. */
  readonly messageId: string;
  /** Date header. */
  readonly date: Date;
  /** From. */
  readonly from: Mailbox;
  /** The one recipient. */
  readonly to: Mailbox;
  /** Reply-To address, if any. */
  readonly replyTo: string | undefined;
  /** Subject, one line. */
  readonly subject: string;
  /** Plain-text body. */
  readonly text: string;
  /** HTML alternative, if any. */
  readonly html: string | undefined;
  /** Message-ID this one follows up (In-Reply-To and References), if any. */
  readonly inReplyTo: string | undefined;
  /** HTTPS one-click unsubscribe endpoint (RFC 8058), if any. */
  readonly unsubscribeUrl: string | undefined;
  /** Unsubscribe mailbox (RFC 2369 mailto:), if any. */
  readonly unsubscribeMailto: string | undefined;
  /** Further header fields (for example `Feedback-ID`), if any. */
  readonly headers?: Readonly<Record<string, string>>;
  /** iTIP calendar object sent as the `text/calendar; method=…` alternative (RFC 6047), if any. */
  readonly calendar?: { readonly method: "REQUEST" | "CANCEL"; readonly ics: string };
}

/** What a transport did with a message. */
export interface DeliveryResult {
  /** The transport that took it. */
  readonly transport: "smtp" | "outbox";
  /** Recipients the server accepted (the recipient, for the outbox). */
  readonly accepted: readonly string[];
  /** Recipients the server rejected. */
  readonly rejected: readonly string[];
  /** Final SMTP reply; "" for the outbox. */
  readonly response: string;
  /** File name in the outbox folder; "" for SMTP. */
  readonly outboxFile: string;
}

/**
 * A transport failure. `unavailable`: the server could not be reached or answered with a temporary
 * (4xx) reply, so the same message may go through later. `rejected`: the server refused it for good
 * (5xx) or refused our credentials, so sending it again gets the same answer.
 */
export class DeliveryError extends Error {
  override name = "DeliveryError";
  /** Whether trying again later can help. */
  readonly kind: "unavailable" | "rejected";
  /** SMTP reply code, when the server answered. */
  readonly responseCode: number | undefined;
  constructor(kind: "unavailable" | "rejected", message: string, responseCode?: number, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
    this.responseCode = responseCode;
  }
}

/**
 * Says why an address may receive nothing (unsubscribed, bounced, on a do-not-contact list), or
 * undefined when it may be sent to. A transport with a guard asks it right before every message.
 */
export type SendGuard = (address: string) => Promise<string | undefined>;

/** The transport's guard refused the recipient: nothing was sent. */
export class RecipientSuppressedError extends Error {
  override name = "RecipientSuppressedError";
  /** Why the recipient may receive nothing. */
  readonly reason: string;
  constructor(address: string, reason: string) {
    super(`${address} may not be sent to: ${reason}`);
    this.reason = reason;
  }
}

/** Rejects with {@link RecipientSuppressedError} when the guard refuses the message's recipient. */
async function applyGuard(guard: SendGuard | undefined, mail: OutgoingEmail): Promise<void> {
  if (guard === undefined) return;
  const reason = await guard(mail.to.address);
  if (reason !== undefined) throw new RecipientSuppressedError(mail.to.address, reason);
}

/** Sends composed messages. */
export interface MailTransport {
  /** Which transport this is. */
  readonly kind: "smtp" | "outbox";
  /** Hands one message over; rejects with {@link DeliveryError} when the SMTP server fails or refuses it. */
  send(mail: OutgoingEmail): Promise<DeliveryResult>;
  /** Closes pooled connections. */
  close(): void;
}

/** Options of {@link createMailTransport}. */
export interface MailTransportOptions {
  /** SMTP connection URL (`smtp://user:pass@host:587`, `smtps://…`); undefined writes to `outboxDir`. */
  readonly smtpUrl: string | undefined;
  /** Folder for `.eml` files when there is no SMTP server. */
  readonly outboxDir: string;
  /** Milliseconds to wait for the TCP connection and for the server's greeting (default 10 s). */
  readonly connectTimeoutMs?: number;
  /** Milliseconds of inactivity after which an SMTP session is given up (default 60 s). */
  readonly socketTimeoutMs?: number;
  /** DKIM key to sign every message with (RFC 6376, rsa-sha256, relaxed/relaxed); unset sends unsigned. */
  readonly dkim?: DkimKey | undefined;
  /**
   * Keep up to this many SMTP connections open and reuse them (newsletter volumes); unset opens one
   * connection per message.
   */
  readonly poolConnections?: number;
  /**
   * Checked right before every message; a refused recipient rejects the send with
   * {@link RecipientSuppressedError} and nothing leaves. Every transport of the agent has one.
   */
  readonly guard?: SendGuard | undefined;
}

/** A DKIM signing key. */
export interface DkimKey {
  /** Signing domain (d=), the From domain or a parent of it for DMARC alignment. */
  readonly domain: string;
  /** Selector (s=): the key's DNS record is `<selector>._domainkey.<domain>`. */
  readonly selector: string;
  /** The RSA private key, PEM. */
  readonly privateKey: string;
}

/**
 * Header fields a DKIM signature covers: nodemailer's defaults plus List-Unsubscribe-Post, which
 * RFC 8058 §4 requires to be signed together with List-Unsubscribe for one-click to be honoured.
 */
export const DKIM_SIGNED_HEADERS =
  "From:Sender:Reply-To:Subject:Date:Message-ID:To:Cc:MIME-Version:Content-Type:Content-Transfer-Encoding:In-Reply-To:References:List-Id:List-Unsubscribe:List-Unsubscribe-Post:Feedback-ID";

function dkimOptions(key: DkimKey | undefined) {
  return key === undefined
    ? {}
    : {
        dkim: {
          domainName: key.domain,
          keySelector: key.selector,
          privateKey: key.privateKey,
          headerFieldNames: DKIM_SIGNED_HEADERS,
        },
      };
}

/** The form addresses are stored and compared in. */
export function normalizeAddress(address: string): string {
  return address.trim().toLowerCase();
}

/** Parses `Display Name <address>` or a bare address (the form of MESH_EMAIL_FROM). */
export function parseMailbox(value: string): Mailbox {
  const [first] = addressparser(value, { flatten: true });
  if (first === undefined || first.address === "" || !first.address.includes("@")) {
    throw new Error(`"${value}" is not a mailbox such as "Name <address@example.com>"`);
  }
  return { name: first.name, address: first.address };
}

/** The outbox file name of a message: its Message-ID without brackets, unsafe characters replaced. */
export function outboxFileName(messageId: string): string {
  return `${messageId.replace(/^<|>$/g, "").replace(/[^A-Za-z0-9._@+-]/g, "_")}.eml`;
}

function mailOptions(mail: OutgoingEmail): SendMailOptions {
  const unsubscribe = [mail.unsubscribeUrl, mail.unsubscribeMailto && `mailto:${mail.unsubscribeMailto}`].filter(
    (u): u is string => typeof u === "string" && u !== "",
  );
  return {
    messageId: mail.messageId,
    date: mail.date,
    from: mail.from,
    to: mail.to,
    ...(mail.replyTo ? { replyTo: mail.replyTo } : {}),
    subject: mail.subject,
    text: mail.text,
    ...(mail.html ? { html: mail.html } : {}),
    ...(mail.inReplyTo ? { inReplyTo: mail.inReplyTo, references: [mail.inReplyTo] } : {}),
    // One List-Unsubscribe header listing both URIs (RFC 2369 §3.2); the POST header only with HTTPS.
    ...(unsubscribe.length > 0 ? { list: { unsubscribe: [unsubscribe] } } : {}),
    headers: {
      ...mail.headers,
      ...(mail.unsubscribeUrl ? { "List-Unsubscribe-Post": "List-Unsubscribe=One-Click" } : {}),
    },
    // Bodies are our strings; never let a value be read as a file path or URL to fetch.
    ...(mail.calendar
      ? { icalEvent: { method: mail.calendar.method, filename: "invite.ics", content: mail.calendar.ics } }
      : {}),
    disableFileAccess: true,
    disableUrlAccess: true,
    xMailer: false,
  };
}

/** nodemailer's error properties we read. */
interface SmtpFailure {
  code?: string;
  command?: string;
  response?: string;
  responseCode?: number;
}

/** Host and port of an SMTP URL, for messages (never the credentials). */
function smtpServerName(smtpUrl: string): string {
  const u = new URL(smtpUrl);
  return `${u.hostname}:${u.port || (u.protocol === "smtps:" ? "465" : "587")}`;
}

/** Turns a nodemailer failure into a {@link DeliveryError} saying what failed and whether to retry. */
function classify(err: unknown, server: string): DeliveryError {
  const e = (typeof err === "object" && err !== null ? err : {}) as SmtpFailure;
  const reply = (e.response ?? "").trim();
  if (e.code === "EAUTH" || e.code === "ENOAUTH") {
    return new DeliveryError(
      "rejected",
      `the SMTP server ${server} refused the credentials in MESH_SMTP_URL${reply ? `: ${reply}` : ""}`,
      e.responseCode,
      { cause: err },
    );
  }
  const code = e.responseCode;
  // RFC 5321 §4.2.1: 5yz is a permanent rejection (503 is a session-state error, not a verdict).
  if (code !== undefined && code >= 500 && code < 600 && code !== 503) {
    const command = (e.command ?? "").toUpperCase();
    const what =
      e.code === "EENVELOPE" && !command.startsWith("MAIL")
        ? "the recipient"
        : command.startsWith("MAIL")
          ? "the sender"
          : command.startsWith("RCPT")
            ? "the recipient"
            : "the message";
    return new DeliveryError("rejected", `the SMTP server ${server} rejected ${what}: ${reply || code}`, code, {
      cause: err,
    });
  }
  const detail = reply || (err instanceof Error ? err.message : String(err));
  return new DeliveryError(
    "unavailable",
    code !== undefined
      ? `the SMTP server ${server} answered with a temporary failure: ${detail}`
      : `the SMTP server ${server} could not be reached: ${detail}`,
    code,
    { cause: err },
  );
}

/** SMTP to the configured server: one connection per message (outreach volumes need no pool). */
function createSmtpTransport(opts: MailTransportOptions & { smtpUrl: string }): MailTransport {
  const server = smtpServerName(opts.smtpUrl);
  const connectTimeout = opts.connectTimeoutMs ?? 10_000;
  const transporter = createTransport({
    url: opts.smtpUrl,
    connectionTimeout: connectTimeout,
    greetingTimeout: connectTimeout,
    socketTimeout: opts.socketTimeoutMs ?? 60_000,
    disableFileAccess: true,
    disableUrlAccess: true,
    ...(opts.poolConnections !== undefined
      ? { pool: true as const, maxConnections: opts.poolConnections, maxMessages: 1000 }
      : {}),
    ...dkimOptions(opts.dkim),
  });
  return {
    kind: "smtp",
    close: () => transporter.close(),
    async send(mail) {
      await applyGuard(opts.guard, mail);
      try {
        const info = await transporter.sendMail(mailOptions(mail));
        return {
          transport: "smtp",
          accepted: info.accepted.map(String),
          rejected: info.rejected.map(String),
          response: info.response,
          outboxFile: "",
        };
      } catch (err) {
        throw classify(err, server);
      }
    },
  };
}

/** The outbox: the message as nodemailer would send it, written atomically as one `.eml` file. */
function createOutboxTransport(opts: MailTransportOptions): MailTransport {
  const composer = createTransport({
    streamTransport: true,
    buffer: true,
    newline: "windows",
    ...dkimOptions(opts.dkim),
  });
  return {
    kind: "outbox",
    close: () => composer.close(),
    async send(mail) {
      await applyGuard(opts.guard, mail);
      const info = await composer.sendMail(mailOptions(mail));
      const file = outboxFileName(mail.messageId);
      await mkdir(opts.outboxDir, { recursive: true });
      // Write aside and rename, so a reader of the folder never sees half a message.
      const tmp = join(opts.outboxDir, `.${file}.${randomUUID()}.tmp`);
      try {
        await writeFile(tmp, info.message as Buffer, { flag: "wx", mode: 0o600 });
        await rename(tmp, join(opts.outboxDir, file));
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
      return { transport: "outbox", accepted: [mail.to.address], rejected: [], response: "", outboxFile: file };
    },
  };
}

/** The transport the configuration asks for: SMTP when `smtpUrl` is set, else the outbox folder. */
export function createMailTransport(opts: MailTransportOptions): MailTransport {
  return opts.smtpUrl === undefined
    ? createOutboxTransport(opts)
    : createSmtpTransport({ ...opts, smtpUrl: opts.smtpUrl });
}
