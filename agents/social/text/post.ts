/**
 * One platform's post from source content: the platform's rules (or a caller's override), the
 * hashtags it takes, the UTM-tagged link, and the text composed within the limit. Shared by
 * AdaptSocialContent and the calendar's scheduled posts.
 */
import { create } from "@bufbuild/protobuf";
import {
  type PlatformPost,
  PlatformPostSchema,
  type SocialPlatform,
} from "../../../gen/mesh/social/v1/social_service_pb.ts";
import { composePost, normaliseHashtags } from "./compose.ts";
import { measurerOf, urlRanges } from "./length.ts";
import { rulesOf } from "./platforms.ts";
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
}

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
      measure: measurerOf(rules.counting),
      linkClickable: rules.linkClickable,
      linkHint: rules.linkHint,
      locale: options.locale || "en-US",
    },
    urlRanges,
  );
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
  });
}
