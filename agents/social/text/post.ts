/**
 * One platform's post from source content: the platform's rules (or a caller's override), the
 * hashtags it takes, the UTM-tagged link, and the text composed within the limit. Shared by
 * AdaptSocialContent and the calendar's scheduled posts.
 */
import { create } from "@bufbuild/protobuf";
import {
  type PlatformPost,
  PlatformPostSchema,
  SocialPlatform,
} from "../../../gen/mesh/social/v1/social_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { composePost, normaliseHashtags } from "./compose.ts";
import { measurerOf, urlRanges } from "./length.ts";
import { rulesOf } from "./platforms.ts";
import { splitThread } from "./thread.ts";
import { withUtm } from "./utm.ts";

/** What a post is written from. */
export interface PostSource {
  readonly title: string;
  readonly summary: string;
  /** Link to share; "" for none. */
  readonly url: string;
  /** Candidate hashtags, with or without `#`, most relevant first. */
  readonly hashtags: readonly string[];
  readonly callToAction: string;
}

/** How to write it. */
export interface PostOptions {
  /** Campaign parameters; undefined adds none. Empty source and medium mean the platform name and `social`. */
  readonly utm?: {
    readonly source: string;
    readonly medium: string;
    readonly campaign: string;
    readonly term: string;
    readonly content: string;
  };
  /** Length limit in place of the platform's; 0 keeps it. */
  readonly characterLimit?: number;
  /** Hashtags in place of the platform's recommendation; 0 keeps it. */
  readonly maxHashtags?: number;
  /** BCP 47 locale; "" means `en-US`. */
  readonly locale?: string;
  /** Also split content that does not fit into a numbered thread, where the platform has threads. */
  readonly thread?: boolean;
}

/** Platforms where a post can be answered by its author's next post to form a thread. */
const threadPlatforms: ReadonlySet<SocialPlatform> = new Set([
  SocialPlatform.X,
  SocialPlatform.THREADS,
  SocialPlatform.BLUESKY,
  SocialPlatform.MASTODON,
]);

/** Writes `source` as a post for `platform`. */
export function writePost(source: PostSource, platform: SocialPlatform, options: PostOptions = {}): PlatformPost {
  const rules = rulesOf(platform);
  const limit = options.characterLimit || rules.limit;
  const maxHashtags = Math.min(options.maxHashtags || rules.hashtags, rules.maxHashtags);
  const utm = options.utm;
  const link =
    source.url === "" || utm === undefined
      ? source.url
      : withUtm(source.url, {
          source: utm.source || rules.name,
          medium: utm.medium || "social",
          campaign: utm.campaign,
          term: utm.term,
          content: utm.content,
        });
  const measure = measurerOf(rules.counting);
  const locale = options.locale || "en-US";
  const post = composePost(
    {
      title: source.title,
      summary: source.summary,
      link,
      hashtags: normaliseHashtags(source.hashtags, maxHashtags),
      callToAction: source.callToAction,
    },
    {
      limit,
      measure,
      linkClickable: rules.linkClickable,
      linkHint: rules.linkHint,
      locale,
    },
    urlRanges,
  );
  const thread = (): string[] => {
    try {
      return splitThread(post.full, { limit, measure, locale });
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
      throw new InvalidInputError("overrides.character_limit", `${err.message}: raise it to split into a thread`);
    }
  };
  return create(PlatformPostSchema, {
    platform,
    text: post.text,
    weightedLength: post.length,
    characterLimit: limit,
    counting: rules.counting,
    truncated: post.truncated,
    withinLimit: post.withinLimit,
    linkUrl: link,
    linkClickable: rules.linkClickable,
    hashtags: [...post.hashtags],
    thread: options.thread === true && post.truncated && threadPlatforms.has(platform) ? thread() : [],
  });
}
