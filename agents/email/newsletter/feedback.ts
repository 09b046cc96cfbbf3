/**
 * Bounce and complaint reports as mailbox providers send them:
 *
 * - RFC 3464 delivery status notifications: `multipart/report; report-type=delivery-status`, whose
 *   `message/delivery-status` part holds a per-message field block and one block per recipient
 *   (`Final-Recipient`, `Action`, `Status`, `Diagnostic-Code`), followed by the returned message
 *   (`message/rfc822`) or its headers (`text/rfc822-headers`).
 * - RFC 5965 abuse reports (ARF): `multipart/report; report-type=feedback-report` with a
 *   `message/feedback-report` part (`Feedback-Type`, `Original-Rcpt-To`, …) and the reported message.
 *
 * The MIME structure is walked here (RFC 2046 §5.1 multipart bodies, one level, or two when the
 * report is wrapped in a multipart/mixed), as are the report fields (RFC 5322 header syntax with
 * folding, blocks separated by blank lines). General mail parsers fold the report parts into the
 * message text, which loses the per-recipient blocks.
 */

/** One parsed report. */
export interface ParsedFeedback {
  readonly kind: "delivery-status" | "feedback-report";
  /** Message-ID of the original message (with angle brackets), "" when the report does not include it. */
  readonly originalMessageId: string;
  /** To of the original message, lower-cased, "" when unknown. */
  readonly originalTo: string;
  readonly recipients: readonly FeedbackEntry[];
}

/** One recipient of a report. */
export interface FeedbackEntry {
  /** Lower-cased address ("" when the report names none: then the original message's recipient applies). */
  readonly address: string;
  /** DSN Action, or the ARF Feedback-Type. */
  readonly action: string;
  /** DSN Status (`5.1.1`), "" for ARF. */
  readonly status: string;
  readonly diagnostic: string;
}

/** A report this module cannot read. */
export class FeedbackFormatError extends Error {
  override name = "FeedbackFormatError";
}

/** Parses RFC 5322-style field blocks (unfolded), separated by blank lines, into maps of lower-cased names. */
export function parseFieldBlocks(text: string): Map<string, string>[] {
  const blocks: Map<string, string>[] = [];
  for (const chunk of text.replace(/\r\n/g, "\n").split(/\n[ \t]*\n/)) {
    const unfolded = chunk.replace(/\n[ \t]+/g, " ");
    const fields = new Map<string, string>();
    for (const line of unfolded.split("\n")) {
      const m = /^([!-9;-~]+)[ \t]*:[ \t]*(.*)$/.exec(line);
      if (m) fields.set((m[1] as string).toLowerCase(), (m[2] as string).trim());
    }
    if (fields.size > 0) blocks.push(fields);
  }
  return blocks;
}

/** The address of a typed address field (`rfc822; user@example.com`), lower-cased. */
function addressOf(value: string | undefined): string {
  if (value === undefined) return "";
  const v = value.includes(";") ? value.slice(value.indexOf(";") + 1) : value;
  return v.trim().replace(/^<|>$/g, "").toLowerCase();
}

/** Message-ID and To of a returned message or header block. */
function originalHeaders(raw: string): { messageId: string; to: string } {
  const head = raw.replace(/\r\n/g, "\n").split(/\n\n/)[0] ?? "";
  const [fields] = parseFieldBlocks(head);
  const id = /<[^<>\s]+>/.exec(fields?.get("message-id") ?? "")?.[0] ?? "";
  const to = /[^\s<>,"]+@[^\s<>,"]+/.exec(fields?.get("to") ?? "")?.[0]?.toLowerCase() ?? "";
  return { messageId: id, to };
}

/** A MIME entity: its content type, parameters and decoded body. */
interface Entity {
  readonly type: string;
  readonly params: ReadonlyMap<string, string>;
  readonly body: Buffer;
}

/** Splits an entity into its header block (fields) and body; accepts CRLF or LF line ends. */
function splitEntity(raw: Buffer): { fields: Map<string, string>; body: Buffer } {
  const text = raw.toString("latin1");
  // An entity without header fields starts with the blank line.
  const m = /^\r?\n/.exec(text) ?? /\r?\n\r?\n/.exec(text);
  const head = m ? text.slice(0, m.index) : text;
  const body = m ? raw.subarray(m.index + m[0].length) : Buffer.alloc(0);
  return { fields: parseFieldBlocks(head)[0] ?? new Map(), body };
}

/** `type/subtype; a=b; c="d"` → type and parameters (lower-cased names). */
function contentType(value: string | undefined): { type: string; params: Map<string, string> } {
  const [t = "", ...rest] = (value ?? "text/plain").split(";");
  const params = new Map<string, string>();
  for (const p of rest.join(";").match(/[^;=\s]+\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)/g) ?? []) {
    const i = p.indexOf("=");
    params.set(
      p.slice(0, i).trim().toLowerCase(),
      p
        .slice(i + 1)
        .trim()
        .replace(/^"|"$/g, "")
        .replace(/\\(.)/g, "$1"),
    );
  }
  return { type: t.trim().toLowerCase(), params };
}

/** Undoes a Content-Transfer-Encoding (base64, quoted-printable; others are identity). */
function decodeBody(body: Buffer, encoding: string | undefined): Buffer {
  const e = (encoding ?? "").trim().toLowerCase();
  if (e === "base64") return Buffer.from(body.toString("latin1").replace(/[^A-Za-z0-9+/=]/g, ""), "base64");
  if (e === "quoted-printable") {
    const s = body.toString("latin1").replace(/=\r?\n/g, "");
    return Buffer.from(
      s.replace(/=([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(Number.parseInt(h, 16))),
      "latin1",
    );
  }
  return body;
}

function entityOf(raw: Buffer): Entity {
  const { fields, body } = splitEntity(raw);
  const ct = contentType(fields.get("content-type"));
  return { type: ct.type, params: ct.params, body: decodeBody(body, fields.get("content-transfer-encoding")) };
}

/** The body parts of a multipart entity (RFC 2046 §5.1.1: between `--boundary` lines, up to `--boundary--`). */
function bodyParts(e: Entity): Entity[] {
  const boundary = e.params.get("boundary");
  if (!boundary) return [];
  const text = e.body.toString("latin1");
  const escaped = boundary.replace(/[.*+?^$()|[\]{}\\]/g, "\\$&");
  const delimiter = new RegExp(`(?:^|\\r?\\n)--${escaped}(--)?[ \\t]*(?=\\r?\\n|$)`, "g");
  const parts: Entity[] = [];
  let start = -1;
  for (let m = delimiter.exec(text); m !== null; m = delimiter.exec(text)) {
    if (start >= 0) parts.push(entityOf(Buffer.from(text.slice(start, m.index).replace(/^\r?\n/, ""), "latin1")));
    if (m[1] === "--") break;
    start = m.index + m[0].length;
  }
  return parts;
}

/** Parses a DSN or an ARF report; throws {@link FeedbackFormatError} for anything else. */
export async function parseFeedback(raw: Buffer): Promise<ParsedFeedback> {
  let top = entityOf(raw);
  // A report forwarded inside multipart/mixed: use the report part.
  if (top.type === "multipart/mixed") top = bodyParts(top).find((p) => p.type === "multipart/report") ?? top;
  const type = top.type;
  const reportType = (top.params.get("report-type") ?? "").toLowerCase();
  if (type !== "multipart/report" || (reportType !== "delivery-status" && reportType !== "feedback-report")) {
    throw new FeedbackFormatError(
      `not a delivery status notification or abuse report: Content-Type is ${type || "missing"}${reportType ? `; report-type=${reportType}` : ""}, expected multipart/report with report-type delivery-status (RFC 3464) or feedback-report (RFC 5965)`,
    );
  }
  const parts = bodyParts(top).map((p) => ({ type: p.type, text: p.body.toString("utf8") }));
  const original = parts.find((p) => p.type === "message/rfc822" || p.type === "text/rfc822-headers");
  const orig = original ? originalHeaders(original.text) : { messageId: "", to: "" };
  if (reportType === "delivery-status") {
    const ds = parts.find((p) => p.type === "message/delivery-status" || p.type === "message/global-delivery-status");
    if (ds === undefined)
      throw new FeedbackFormatError("the delivery status notification has no message/delivery-status part");
    // The first block holds the per-message fields; each later one is a recipient.
    const blocks = parseFieldBlocks(ds.text).slice(1);
    const recipients = blocks
      .filter((b) => b.has("final-recipient") || b.has("original-recipient"))
      .map((b) => ({
        address: addressOf(b.get("final-recipient") ?? b.get("original-recipient")),
        action: (b.get("action") ?? "").toLowerCase(),
        status: /\d\.\d{1,3}\.\d{1,3}/.exec(b.get("status") ?? "")?.[0] ?? "",
        diagnostic: b.get("diagnostic-code") ?? "",
      }));
    if (recipients.length === 0) throw new FeedbackFormatError("the delivery status notification names no recipient");
    return { kind: "delivery-status", originalMessageId: orig.messageId, originalTo: orig.to, recipients };
  }
  const fr = parts.find((p) => p.type === "message/feedback-report");
  if (fr === undefined) throw new FeedbackFormatError("the abuse report has no message/feedback-report part");
  const [fields] = parseFieldBlocks(fr.text);
  const feedbackType = (fields?.get("feedback-type") ?? "").toLowerCase();
  if (feedbackType === "") throw new FeedbackFormatError("the abuse report has no Feedback-Type");
  const rcpt = addressOf(fields?.get("original-rcpt-to")) || orig.to;
  return {
    kind: "feedback-report",
    originalMessageId: orig.messageId,
    originalTo: orig.to,
    recipients: [{ address: rcpt, action: feedbackType, status: "", diagnostic: "" }],
  };
}
