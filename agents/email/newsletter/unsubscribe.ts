/**
 * RFC 8058 one-click unsubscribe: each message's List-Unsubscribe URL carries a token naming its
 * send row and signed with HMAC-SHA256, so the endpoint trusts no address from the request — only
 * a URL we issued. The endpoint answers the one-click POST (`List-Unsubscribe=One-Click`) by putting
 * the address on the suppression list; a GET (a person following the link, or a mail scanner
 * prefetching it) only shows a confirmation form, as RFC 8058 §3.2 requires that GETs change nothing.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type http from "node:http";
import { StopCondition } from "../../../gen/mesh/email/v1/email_service_pb.ts";
import type { Database, EntityManager } from "../../../lib/db/index.ts";
import type { Logger } from "../../../lib/log/index.ts";
import type { HttpRequest, HttpResponse, HttpRoute } from "../../../lib/server/index.ts";
import { EmailNewsletterSend } from "../entities.ts";
import { stopEnrollments } from "../sequences/stops.ts";
import { escapeHtml } from "./render.ts";

/** Path the operations server answers one-click unsubscribes on; the public URL must reach it. */
export const UNSUBSCRIBE_PATH = "/email/unsubscribe";

/**
 * What a token names: a newsletter send row (`email_newsletter_send`) or a follow-up step
 * (`email_follow_up_send`). Each kind signs under its own context, so a token of one kind can never
 * be replayed as the other; newsletter tokens keep the format issued before follow-ups had any.
 */
export type UnsubscribeTarget = { readonly kind: "newsletter" | "follow_up"; readonly sendId: string };

const TOKEN_CONTEXT = { newsletter: "mesh.email.unsubscribe.v1:", follow_up: "mesh.email.unsubscribe.follow_up.v1:" };
const TOKEN_PREFIX = { newsletter: "", follow_up: "f" };

const mac = (key: Buffer, kind: UnsubscribeTarget["kind"], id: string) =>
  createHmac("sha256", key)
    .update(TOKEN_CONTEXT[kind] + id)
    .digest();

/** The token of a send row: `[f]<id hex>.<HMAC-SHA256 base64url>` (`f` marks a follow-up step). */
export function signUnsubscribeToken(
  key: Buffer,
  sendId: string,
  kind: UnsubscribeTarget["kind"] = "newsletter",
): string {
  const id = sendId.replaceAll("-", "");
  return `${TOKEN_PREFIX[kind]}${id}.${mac(key, kind, id).toString("base64url")}`;
}

/** The send row a token names when its signature is ours (compared in constant time), else undefined. */
export function verifyUnsubscribeToken(key: Buffer, token: string): UnsubscribeTarget | undefined {
  const m = /^(f?)([0-9a-f]{32})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (m === null) return undefined;
  const kind = m[1] === "f" ? "follow_up" : "newsletter";
  const id = m[2] as string;
  const want = mac(key, kind, id);
  const got = Buffer.from(m[3] as string, "base64url");
  if (got.length !== want.length || !timingSafeEqual(got, want)) return undefined;
  return {
    kind,
    sendId: `${id.slice(0, 8)}-${id.slice(8, 12)}-${id.slice(12, 16)}-${id.slice(16, 20)}-${id.slice(20)}`,
  };
}

/** The campaign's unsubscribe URL with a recipient's token appended as `token`. */
export function unsubscribeUrlFor(base: string, token: string): string {
  const u = new URL(base);
  u.searchParams.set("token", token);
  return u.toString();
}

/**
 * The signing key: the configured secret when there is one, else a random key the agent created
 * once and keeps in `email_secret`, shared by every instance on the database.
 */
export async function loadUnsubscribeKey(
  db: Database,
  configured: string | undefined,
  now: () => Date,
): Promise<Buffer> {
  if (configured !== undefined && configured !== "") return Buffer.from(configured, "utf8");
  const conn = db.fork().getConnection();
  await conn.execute(
    `insert into "${db.schema}"."email_secret" (name, value, created_at) values ('unsubscribe', ?, ?) on conflict (name) do nothing`,
    [randomBytes(32), now()],
    "run",
  );
  const [row] = await conn.execute<{ value: Buffer }[]>(
    `select value from "${db.schema}"."email_secret" where name = 'unsubscribe'`,
    [],
    "all",
  );
  if (!row) throw new Error("email_secret: unsubscribe key missing after insert");
  return row.value;
}

async function suppress(em: EntityManager, schema: string, address: string, reason: string, now: Date): Promise<void> {
  await em
    .getConnection()
    .execute(
      `insert into "${schema}"."email_suppression" (address, reason, created_at) values (?, ?, ?) on conflict (address) do nothing`,
      [address, reason, now],
      "run",
      em.getTransactionContext(),
    );
}

/**
 * Puts the recipient of the send row a token names on the suppression list (which every send path
 * checks), in one transaction with the row's own record: a newsletter send is marked unsubscribed
 * (the campaign report counts it); a follow-up step stops every active follow-up of its contact.
 * False for an unknown row (an erased recipient's, say).
 */
export async function unsubscribeSend(
  db: Database,
  target: UnsubscribeTarget,
  via: string,
  now: Date,
): Promise<boolean> {
  return db.transaction(async (em) => {
    if (target.kind === "newsletter") {
      const row = await em.findOne(EmailNewsletterSend, { id: target.sendId });
      if (row === null) return false;
      if (row.unsubscribedAt === null) row.unsubscribedAt = now;
      row.updatedAt = now;
      await suppress(em, db.schema, row.recipient, `unsubscribed (${via}, campaign ${row.campaignId})`, now);
      return true;
    }
    const [row] = await em.getConnection().execute<{ contact_id: string; address: string; sequence_id: string }[]>(
      `select e.contact_id, e.address, e.sequence_id from "${db.schema}"."email_follow_up_send" s
       join "${db.schema}"."email_follow_up_enrollment" e on e.id = s.enrollment_id where s.id = ?`,
      [target.sendId],
      "all",
      em.getTransactionContext(),
    );
    if (row === undefined) return false;
    const reason = `unsubscribed (${via}, follow-up ${row.sequence_id})`;
    await suppress(em, db.schema, row.address, reason, now);
    await stopEnrollments(em, db.schema, { contactId: row.contact_id }, StopCondition.UNSUBSCRIBED, reason, now);
    return true;
  });
}

async function readBody(req: HttpRequest, limit: number): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > limit) return undefined;
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function send(res: HttpResponse, status: number, body: string, type = "text/html; charset=utf-8"): void {
  (res as http.ServerResponse).writeHead(status, {
    "content-type": type,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
  });
  res.end(body);
}

const page = (title: string, body: string) =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${escapeHtml(title)}</title></head><body style="font-family:sans-serif;max-width:36em;margin:3em auto">${body}</body></html>`;

/** Options of {@link createUnsubscribeRoute}. */
export interface UnsubscribeRouteOptions {
  readonly db: Database;
  /** The signing key (loaded lazily: the route may be asked before the first send). */
  readonly key: () => Promise<Buffer>;
  readonly now: () => Date;
  readonly log: Logger;
}

/**
 * `POST /email/unsubscribe?token=…` unsubscribes (RFC 8058 one-click, or the form of the GET page);
 * `GET` shows the form. A missing or forged token gets 400/403 and changes nothing.
 */
export function createUnsubscribeRoute(opts: UnsubscribeRouteOptions): HttpRoute {
  return async (req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname !== UNSUBSCRIBE_PATH) return false;
    if (req.method !== "POST" && req.method !== "GET") {
      (res as http.ServerResponse).setHeader("allow", "GET, POST");
      send(res, 405, "method not allowed\n", "text/plain; charset=utf-8");
      return true;
    }
    const token = url.searchParams.get("token") ?? "";
    if (token === "") {
      send(res, 400, page("Unsubscribe", "<p>This unsubscribe link is incomplete.</p>"));
      return true;
    }
    const target = verifyUnsubscribeToken(await opts.key(), token);
    if (target === undefined) {
      send(res, 403, page("Unsubscribe", "<p>This unsubscribe link is not valid.</p>"));
      return true;
    }
    if (req.method === "GET") {
      const action = `${UNSUBSCRIBE_PATH}?token=${encodeURIComponent(token)}`;
      send(
        res,
        200,
        page(
          "Unsubscribe",
          `<form method="post" action="${escapeHtml(action)}"><input type="hidden" name="List-Unsubscribe" value="One-Click"><p>Stop receiving these emails?</p><button type="submit">Unsubscribe</button></form>`,
        ),
      );
      return true;
    }
    // RFC 8058 §3.1: the body is `List-Unsubscribe=One-Click` (form-urlencoded or multipart); the
    // signed URL is the authorisation, so any POST to it unsubscribes.
    const body = await readBody(req, 8192);
    if (body === undefined) {
      send(res, 413, "body too large\n", "text/plain; charset=utf-8");
      return true;
    }
    const oneClick = /List-Unsubscribe=One-Click/i.test(body) || /name="List-Unsubscribe"/i.test(body);
    const found = await unsubscribeSend(opts.db, target, oneClick ? "one-click" : "form", opts.now());
    if (!found) {
      send(res, 404, page("Unsubscribe", "<p>This unsubscribe link is no longer valid.</p>"));
      return true;
    }
    opts.log.info("unsubscribe", { kind: target.kind, sendId: target.sendId, oneClick });
    send(res, 200, page("Unsubscribed", "<p>You are unsubscribed and will receive no more of these emails.</p>"));
    return true;
  };
}
