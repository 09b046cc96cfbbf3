/**
 * The rules of each platform the Social agent writes for: length limit and how it is counted,
 * the number of hashtags to use, whether links in post text are clickable, and the utm_source name.
 *
 * Hashtag counts are the platforms' own guidance where they give one (Instagram and TikTok 3–5,
 * Threads one topic tag per post, LinkedIn three, X one or two); Instagram refuses more than 30.
 */
import { LengthCounting, SocialPlatform } from "../../../gen/mesh/social/v1/social_service_pb.ts";

/** One platform's rules. */
export interface PlatformRules {
  /** Name used as utm_source and in logs, for example `linkedin`. */
  readonly name: string;
  /** Longest post, in `counting` units. */
  readonly limit: number;
  /** How length is counted. */
  readonly counting: LengthCounting;
  /** Hashtags to use by default. */
  readonly hashtags: number;
  /** Hashtags the platform accepts at most. */
  readonly maxHashtags: number;
  /** Links in post text are clickable (otherwise the link is left out of the text). */
  readonly linkClickable: boolean;
  /** Said in place of the link where links are not clickable and go in the profile (English posts only). */
  readonly linkHint: string;
}

const rules: Readonly<Partial<Record<SocialPlatform, PlatformRules>>> = {
  [SocialPlatform.X]: {
    name: "x",
    limit: 280,
    counting: LengthCounting.X_WEIGHTED,
    hashtags: 2,
    maxHashtags: 30,
    linkClickable: true,
    linkHint: "",
  },
  [SocialPlatform.LINKEDIN]: {
    name: "linkedin",
    limit: 3000,
    counting: LengthCounting.CODE_UNITS,
    hashtags: 3,
    maxHashtags: 30,
    linkClickable: true,
    linkHint: "",
  },
  [SocialPlatform.FACEBOOK]: {
    name: "facebook",
    limit: 63_206,
    counting: LengthCounting.CODE_UNITS,
    hashtags: 2,
    maxHashtags: 30,
    linkClickable: true,
    linkHint: "",
  },
  [SocialPlatform.INSTAGRAM]: {
    name: "instagram",
    limit: 2200,
    counting: LengthCounting.CODE_UNITS,
    hashtags: 5,
    maxHashtags: 30,
    linkClickable: false,
    linkHint: "link in bio",
  },
  [SocialPlatform.THREADS]: {
    name: "threads",
    limit: 500,
    counting: LengthCounting.CODE_UNITS,
    hashtags: 1,
    maxHashtags: 1,
    linkClickable: true,
    linkHint: "",
  },
  [SocialPlatform.BLUESKY]: {
    name: "bluesky",
    limit: 300,
    counting: LengthCounting.GRAPHEMES,
    hashtags: 2,
    maxHashtags: 30,
    linkClickable: true,
    linkHint: "",
  },
  [SocialPlatform.MASTODON]: {
    name: "mastodon",
    limit: 500,
    counting: LengthCounting.CODE_UNITS_SHORT_URLS,
    hashtags: 3,
    maxHashtags: 30,
    linkClickable: true,
    linkHint: "",
  },
  [SocialPlatform.PINTEREST]: {
    name: "pinterest",
    limit: 500,
    counting: LengthCounting.CODE_UNITS,
    hashtags: 5,
    maxHashtags: 30,
    linkClickable: false,
    linkHint: "",
  },
  [SocialPlatform.TIKTOK]: {
    name: "tiktok",
    limit: 2200,
    counting: LengthCounting.CODE_UNITS,
    hashtags: 5,
    maxHashtags: 30,
    linkClickable: false,
    linkHint: "link in bio",
  },
};

/** The rules of `platform`; throws for UNSPECIFIED (callers have checked it). */
export function rulesOf(platform: SocialPlatform): PlatformRules {
  const r = rules[platform];
  if (r === undefined) throw new Error(`no rules for social platform ${platform}`);
  return r;
}

/** True for platforms the agent can write and publish posts for. */
export function isSocialPlatform(platform: SocialPlatform): boolean {
  return rules[platform] !== undefined;
}
