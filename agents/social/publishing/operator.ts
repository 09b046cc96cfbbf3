/**
 * The publishing operator's API: list the scheduled posts and what became of them, cancel a post
 * that is still waiting, and settle a post whose outcome is unknown.
 *
 * Every change is one conditional UPDATE on the post's current state, so it races safely with the
 * publisher (which claims with `status = 'scheduled'` under SKIP LOCKED): a post the publisher has
 * already claimed is no longer `scheduled` and cannot be cancelled. Resolving drops the old claim
 * token, so a late outcome of the claim that went unknown can no longer overwrite the resolution.
 */
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type CancelScheduledPostRequest,
  type CancelScheduledPostResponse,
  CancelScheduledPostResponseSchema,
  type ListScheduledPostsRequest,
  type ListScheduledPostsResponse,
  ListScheduledPostsResponseSchema,
  PostResolution,
  type ResolveScheduledPostRequest,
  type ResolveScheduledPostResponse,
  ResolveScheduledPostResponseSchema,
  type ScheduledPost,
  ScheduledPostSchema,
  ScheduledPostStatus,
} from "../../../gen/mesh/social/v1/social_service_pb.ts";
import {
  type Database,
  decodePageToken,
  type EntityManager,
  encodePageToken,
  pageSizeOf,
  transaction,
} from "../../../lib/db/index.ts";
import { FailedPreconditionError, InvalidInputError, NotFoundError } from "../../../lib/errors/index.ts";
import type { ScheduledPostStatus as StoredStatus } from "../entities.ts";

/** Dependencies of the operator's RPCs. */
export interface OperatorDeps {
  /** The Social agent's database (operations schema). */
  readonly db: Database;
  /** Clock: when a change is made, and "now" for a republish without a time. */
  readonly now: () => Date;
}

const statusNames: Record<StoredStatus, ScheduledPostStatus> = {
  scheduled: ScheduledPostStatus.SCHEDULED,
  publishing: ScheduledPostStatus.PUBLISHING,
  published: ScheduledPostStatus.PUBLISHED,
  failed: ScheduledPostStatus.FAILED,
  unknown: ScheduledPostStatus.UNKNOWN,
  cancelled: ScheduledPostStatus.CANCELLED,
};
const storedOf = new Map(Object.entries(statusNames).map(([k, v]) => [v, k as StoredStatus]));

/** A row of social_scheduled_post as selected here. */
interface PostRow {
  id: string;
  post_key: string;
  calendar_id: string;
  revision: number;
  item_id: string;
  channel_id: string;
  platform: string;
  due_at: Date;
  /** due_at as PostgreSQL prints it, for page tokens (microseconds kept). */
  due_text: string;
  text: string;
  link_url: string;
  hashtags: string[];
  status: StoredStatus;
  attempts: number;
  adapter: string;
  external_id: string;
  error: string;
  published_at: Date | null;
  updated_at: Date;
}

const columns = `id, post_key, calendar_id, revision, item_id, channel_id, platform, due_at, due_at::text as due_text,
  text, link_url, hashtags, status, attempts, adapter, external_id, error, published_at, updated_at`;

function toPost(r: PostRow): ScheduledPost {
  return create(ScheduledPostSchema, {
    postId: r.id,
    postKey: r.post_key,
    calendarId: r.calendar_id,
    revision: r.revision,
    itemId: r.item_id,
    channelId: r.channel_id,
    platform: r.platform,
    dueAt: timestampFromDate(new Date(r.due_at)),
    text: r.text,
    linkUrl: r.link_url,
    hashtags: r.hashtags,
    status: statusNames[r.status],
    attempts: r.attempts,
    adapter: r.adapter,
    externalId: r.external_id,
    error: r.error,
    ...(r.published_at === null ? {} : { publishedAt: timestampFromDate(new Date(r.published_at)) }),
    updatedAt: timestampFromDate(new Date(r.updated_at)),
  });
}

/** ListScheduledPosts: keyset pages by (due_at, id), filtered by calendar, states and due range. */
export async function listScheduledPosts(
  deps: OperatorDeps,
  req: ListScheduledPostsRequest,
): Promise<ListScheduledPostsResponse> {
  const size = pageSizeOf(req.pageSize);
  const scope = "social.scheduled_posts";
  const after = decodePageToken(scope, req.pageToken);
  const where: string[] = [];
  const params: unknown[] = [];
  if (req.calendarId !== "") {
    where.push("calendar_id = ?");
    params.push(req.calendarId);
  }
  if (req.statuses.length > 0) {
    where.push(`status in (${req.statuses.map(() => "?").join(", ")})`);
    params.push(...req.statuses.map((s) => storedOf.get(s)));
  }
  if (req.due?.start !== undefined) {
    where.push("due_at >= ?");
    params.push(timestampDate(req.due.start));
  }
  if (req.due?.end !== undefined) {
    where.push("due_at < ?");
    params.push(timestampDate(req.due.end));
  }
  if (after !== undefined) {
    where.push("(due_at, id) > (?::timestamptz, ?::uuid)");
    params.push(after.at, after.id);
  }
  const rows = await deps.db
    .fork()
    .getConnection()
    .execute<PostRow[]>(
      `select ${columns} from "${deps.db.schema}"."social_scheduled_post"
       ${where.length > 0 ? `where ${where.join(" and ")}` : ""}
       order by due_at, id limit ?`,
      [...params, size + 1],
    );
  const page = rows.slice(0, size);
  const last = page.at(-1);
  return create(ListScheduledPostsResponseSchema, {
    posts: page.map(toPost),
    nextPageToken:
      rows.length > size && last !== undefined ? encodePageToken(scope, { at: last.due_text, id: last.id }) : "",
  });
}

async function current(em: EntityManager, db: Database, id: string): Promise<PostRow> {
  const [row] = await em
    .getConnection()
    .execute<PostRow[]>(
      `select ${columns} from "${db.schema}"."social_scheduled_post" where id = ?`,
      [id],
      "all",
      em.getTransactionContext(),
    );
  if (row === undefined) throw new NotFoundError(`no scheduled post has id ${id}`);
  return row;
}

/**
 * Applies `set` to the post when its status is one of `from` and returns the post as it is after.
 * A post already in `settled` (the state `set` leads to) is returned unchanged: the same change twice
 * changes nothing. Any other state is FAILED_PRECONDITION, saying what `action` needs.
 */
async function transition(
  deps: OperatorDeps,
  id: string,
  change: { from: readonly StoredStatus[]; settled?: StoredStatus; set: Record<string, unknown>; action: string },
): Promise<PostRow> {
  const { from, settled, set, action } = change;
  return transaction(deps.db, async (em) => {
    const row = await current(em, deps.db, id);
    if (row.status === settled) return row;
    const refusal = `post ${id} is ${row.status}; only a post that is ${from.join(" or ")} can be ${action}`;
    if (!from.includes(row.status)) throw new FailedPreconditionError(refusal);
    const keys = Object.keys(set);
    const [after] = await em.getConnection().execute<PostRow[]>(
      `update "${deps.db.schema}"."social_scheduled_post" set ${keys.map((k) => `${k} = ?`).join(", ")}, updated_at = ?
         where id = ? and status in (${from.map(() => "?").join(", ")}) returning ${columns}`,
      [...keys.map((k) => set[k]), deps.now(), id, ...from],
      "all",
      em.getTransactionContext(),
    );
    // The publisher claimed it between the read and the update.
    if (after === undefined) throw new FailedPreconditionError(`post ${id} was claimed for publishing meanwhile`);
    return after;
  });
}

/** CancelScheduledPost: scheduled → cancelled; cancelled stays; anything else FAILED_PRECONDITION. */
export async function cancelScheduledPost(
  deps: OperatorDeps,
  req: CancelScheduledPostRequest,
): Promise<CancelScheduledPostResponse> {
  const row = await transition(deps, req.postId, {
    from: ["scheduled"],
    settled: "cancelled",
    set: { status: "cancelled" },
    action: "cancelled",
  });
  return create(CancelScheduledPostResponseSchema, { post: toPost(row) });
}

/** ResolveScheduledPost: settles an unknown post (or republishes a failed one) as the operator found. */
export async function resolveScheduledPost(
  deps: OperatorDeps,
  req: ResolveScheduledPostRequest,
): Promise<ResolveScheduledPostResponse> {
  const now = deps.now();
  const note = req.note.trim();
  if (req.resolution !== PostResolution.PUBLISHED && req.externalId !== "") {
    throw new InvalidInputError("external_id", "is only for a post resolved as published");
  }
  if (req.resolution !== PostResolution.REPUBLISH && req.publishAt !== undefined) {
    throw new InvalidInputError("publish_at", "is only for a post resolved to be published again");
  }
  let row: PostRow;
  switch (req.resolution) {
    case PostResolution.PUBLISHED:
      row = await transition(deps, req.postId, {
        from: ["unknown"],
        settled: "published",
        set: {
          status: "published",
          claim_token: null,
          adapter: "operator",
          external_id: req.externalId,
          error: note,
          published_at: now,
        },
        action: "resolved as published",
      });
      break;
    case PostResolution.REPUBLISH:
      row = await transition(deps, req.postId, {
        from: ["unknown", "failed"],
        set: {
          status: "scheduled",
          claim_token: null,
          claimed_at: null,
          claimed_by: "",
          attempts: 0,
          due_at: req.publishAt === undefined ? now : timestampDate(req.publishAt),
          error: note,
        },
        action: "published again",
      });
      break;
    case PostResolution.FAILED:
      row = await transition(deps, req.postId, {
        from: ["unknown"],
        settled: "failed",
        set: {
          status: "failed",
          claim_token: null,
          error: note === "" ? "resolved as not published by an operator" : note,
        },
        action: "resolved as failed",
      });
      break;
    default:
      throw new InvalidInputError("resolution", "must be PUBLISHED, REPUBLISH or FAILED");
  }
  return create(ResolveScheduledPostResponseSchema, { post: toPost(row) });
}
