/**
 * Where scheduled posts go. The outbox adapter (the default) records in `social_outbox_post`
 * exactly the body that would have been sent, one row per post however often it is tried; the
 * webhook adapter POSTs that body to a URL, signed with HMAC-SHA256 over `<timestamp>.<body>`
 * (`X-Mesh-Signature: v1=<hex>`, `X-Mesh-Timestamp: <unix seconds>`) and carrying the post key as
 * `Idempotency-Key`, so a receiver can check that the post comes from this mesh, refuse replays
 * outside a time tolerance, and drop a duplicate delivery.
 *
 * An adapter fails with a {@link PublishError} that says whether the post may have gone out: the
 * worker retries only posts that certainly did not.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { Database } from "../../../lib/db/index.ts";

/** One post as it is published. */
export interface OutgoingPost {
  /** Scheduled post id. */
  readonly id: string;
  /** Stable key of the post (calendar, item and channel). */
  readonly postKey: string;
  readonly calendarId: string;
  readonly itemId: string;
  readonly channelId: string;
  /** Platform name, for example `x`. */
  readonly platform: string;
  readonly text: string;
  /** Link with UTM parameters; "" for none. */
  readonly link: string;
  readonly hashtags: readonly string[];
  readonly scheduledFor: Date;
}

/** The JSON body both adapters publish: the same bytes for the same post. */
export function postBody(post: OutgoingPost): string {
  return JSON.stringify({
    postKey: post.postKey,
    calendarId: post.calendarId,
    itemId: post.itemId,
    channelId: post.channelId,
    platform: post.platform,
    text: post.text,
    link: post.link,
    hashtags: post.hashtags,
    scheduledFor: post.scheduledFor.toISOString(),
  });
}

/**
 * Why a publication failed. `not_sent`: nothing reached the receiver (retry later); `retryable`:
 * the receiver answered that it did not take the post (408, 425, 429, 5xx; retry later);
 * `rejected`: the receiver refused it (other 4xx; do not retry); `ambiguous`: the post may have been
 * taken (timeout or connection lost after sending; never retried automatically).
 */
export class PublishError extends Error {
  override name = "PublishError";
  readonly kind: "not_sent" | "retryable" | "rejected" | "ambiguous";
  constructor(kind: PublishError["kind"], message: string) {
    super(message);
    this.kind = kind;
  }
}

/** Publishes posts somewhere. */
export interface PublishAdapter {
  /** `outbox` or `webhook`. */
  readonly name: string;
  /** Publishes `post`; resolves with the receiver's id for it, or throws {@link PublishError}. */
  publish(post: OutgoingPost): Promise<{ externalId: string }>;
}

/** Records posts in `social_outbox_post` instead of publishing them. */
export function createOutboxAdapter(db: Database, now: () => Date): PublishAdapter {
  return {
    name: "outbox",
    async publish(post) {
      const body = postBody(post);
      await db.transaction(async (em) => {
        await em
          .getConnection()
          .execute(
            `insert into "${db.schema}"."social_outbox_post" (post_id, post_key, channel_id, platform, body, recorded_at) values (?, ?, ?, ?, ?, ?) on conflict (post_id) do nothing`,
            [post.id, post.postKey, post.channelId, post.platform, body, now()],
            "run",
            em.getTransactionContext(),
          );
      });
      return { externalId: `outbox:${post.id}` };
    },
  };
}

/** `v1=<hex>`: HMAC-SHA256 with `secret` over `<timestamp>.<body>`. */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `v1=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}

/**
 * True when `signature` is `body`'s signature at `timestamp` (constant-time comparison) and the
 * timestamp is within `toleranceSec` of `nowSec`: what a receiver checks.
 */
export function verifyWebhookSignature(
  secret: string,
  timestamp: string,
  signature: string,
  body: string,
  nowSec: number,
  toleranceSec = 300,
): boolean {
  if (!/^\d{1,12}$/.test(timestamp)) return false;
  const ts = Number(timestamp);
  if (Math.abs(nowSec - ts) > toleranceSec) return false;
  const expected = Buffer.from(signWebhook(secret, ts, body));
  const given = Buffer.from(signature);
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** Options of {@link createWebhookAdapter}. */
export interface WebhookOptions {
  /** Receiver URL (http or https). */
  readonly url: string;
  /** Shared secret of the signature. */
  readonly secret: string;
  /** Longest wait for an answer; past it the outcome is unknown (default 10 s). */
  readonly timeoutMs?: number;
  /** Clock of the signature timestamp. */
  readonly now: () => Date;
}

/** Connection errors raised before a request could be sent. */
const notSentCodes = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"]);

function causeCode(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown } } | undefined)?.cause;
  return typeof cause?.code === "string" ? cause.code : "";
}

/** POSTs signed posts to a webhook. */
export function createWebhookAdapter(opts: WebhookOptions): PublishAdapter {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return {
    name: "webhook",
    async publish(post) {
      const body = postBody(post);
      const timestamp = Math.floor(opts.now().getTime() / 1000);
      let res: Response;
      try {
        res = await fetch(opts.url, {
          method: "POST",
          redirect: "manual",
          signal: AbortSignal.timeout(timeoutMs),
          headers: {
            "content-type": "application/json",
            "idempotency-key": post.postKey,
            "x-mesh-timestamp": String(timestamp),
            "x-mesh-signature": signWebhook(opts.secret, timestamp, body),
          },
          body,
        });
      } catch (err) {
        const code = causeCode(err);
        if (notSentCodes.has(code)) throw new PublishError("not_sent", `webhook unreachable: ${code}`);
        const what = err instanceof Error ? `${err.name}: ${err.message}${code ? ` (${code})` : ""}` : String(err);
        throw new PublishError("ambiguous", `no answer from the webhook: ${what}`);
      }
      const text = (await res.text().catch(() => "")).slice(0, 2000);
      if (res.status >= 200 && res.status < 300) {
        let externalId = "";
        try {
          const id = (JSON.parse(text) as { id?: unknown }).id;
          if (typeof id === "string" || typeof id === "number") externalId = String(id).slice(0, 255);
        } catch {
          // a receiver need not answer JSON
        }
        return { externalId };
      }
      const why = `webhook answered ${res.status}${text ? `: ${text.slice(0, 200)}` : ""}`;
      if (res.status === 408 || res.status === 425 || res.status === 429 || res.status >= 500) {
        throw new PublishError("retryable", why);
      }
      throw new PublishError("rejected", why);
    },
  };
}
