/**
 * AdaptSocialContent: one post per requested platform from one piece of content.
 *
 * Method: each platform's rules (agents/social/text/platforms.ts) give the length limit and how it
 * is counted — X by twitter-text's weighted length (CJK and emoji 2, every URL 23, after NFC),
 * Bluesky in grapheme clusters, Mastodon in code units with URLs as 23, the others in UTF-16 code
 * units — the hashtags to use and whether links in text are clickable. The link gets the UTM
 * parameters (utm_source = platform, utm_medium = social unless given; the link's own query and
 * fragment kept). The post is title, summary, call to action with the link, and hashtags; when it
 * is too long the summary is cut at a word boundary with an ellipsis, then hashtags, the call to
 * action and the title give way in that order (agents/social/text/compose.ts). Pure: no state.
 *
 * Reference: twitter-text 3 parseTweet (weighted length); UAX #29 (grapheme and word boundaries).
 */
import { create } from "@bufbuild/protobuf";
import {
  type AdaptSocialContentRequest,
  AdaptSocialContentRequestSchema,
  type AdaptSocialContentResponse,
  AdaptSocialContentResponseSchema,
} from "../../../gen/mesh/social/v1/social_service_pb.ts";
import { checkContract } from "../../../lib/errors/index.ts";
import { writePost } from "../text/post.ts";

/** Writes the posts; bad input is InvalidInputError naming the field. */
export function adaptSocialContent(req: AdaptSocialContentRequest): AdaptSocialContentResponse {
  checkContract(AdaptSocialContentRequestSchema, req, { "adapt_social_content.override_platforms": "overrides" });
  const content = req.content as NonNullable<AdaptSocialContentRequest["content"]>; // required by the contract
  const posts = req.platforms.map((platform) => {
    const override = req.overrides.find((o) => o.platform === platform);
    return writePost(
      {
        title: content.title,
        summary: content.summary,
        url: content.url,
        hashtags: content.hashtags,
        callToAction: content.callToAction,
      },
      platform,
      {
        ...(req.utm ? { utm: req.utm } : {}),
        characterLimit: override?.characterLimit ?? 0,
        maxHashtags: override?.maxHashtags ?? 0,
        locale: req.locale,
        thread: req.splitIntoThread,
      },
    );
  });
  return create(AdaptSocialContentResponseSchema, { posts });
}
