/**
 * Post length as each platform counts it. X uses twitter-text's weighted length (its own library,
 * so URLs, emoji sequences and the CJK weight ranges match what X's composer shows); Bluesky counts
 * extended grapheme clusters (Intl.Segmenter, UAX #29); Mastodon counts characters with every URL
 * as 23; the others count UTF-16 code units, which is what their web composers enforce.
 */
import twitterText from "twitter-text";
import { LengthCounting } from "../../../gen/mesh/social/v1/social_service_pb.ts";

/** Length every URL counts for on X and Mastodon (t.co / Mastodon's fixed link length). */
export const shortUrlLength = 23;

const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });

/** twitter-text's weighted length: most Latin characters 1, CJK and emoji 2, every URL 23 (after NFC). */
export function xWeightedLength(text: string): number {
  return twitterText.parseTweet(text).weightedLength;
}

/** User-perceived characters (extended grapheme clusters). */
export function graphemeLength(text: string): number {
  let n = 0;
  for (const _ of graphemes.segment(text)) n++;
  return n;
}

/**
 * URLs in `text` with their UTF-16 indices, as twitter-text finds them. Only URLs with a scheme are
 * returned: the platforms that shorten links (Mastodon) and our trimming treat bare domains as text.
 */
export function urlRanges(text: string): { start: number; end: number }[] {
  return twitterText
    .extractUrlsWithIndices(text, { extractUrlsWithoutProtocol: false })
    .map((u) => ({ start: u.indices[0], end: u.indices[1] }));
}

/** UTF-16 code units with every URL counted as {@link shortUrlLength}. */
export function shortUrlCodeUnitLength(text: string): number {
  let n = text.length;
  for (const u of urlRanges(text)) n += shortUrlLength - (u.end - u.start);
  return n;
}

/** The function measuring text the way `counting` says. */
export function measurerOf(counting: LengthCounting): (text: string) => number {
  switch (counting) {
    case LengthCounting.X_WEIGHTED:
      return xWeightedLength;
    case LengthCounting.GRAPHEMES:
      return graphemeLength;
    case LengthCounting.CODE_UNITS_SHORT_URLS:
      return shortUrlCodeUnitLength;
    default:
      return (text) => text.length;
  }
}
