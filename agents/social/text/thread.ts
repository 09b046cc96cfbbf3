/**
 * Splits a text too long for one post into a numbered thread. Sentences (Intl.Segmenter sentence
 * segments) are packed greedily into posts; a sentence longer than a post is split between words,
 * and a word longer than a post (a very long URL on a platform that counts it whole) between grapheme
 * clusters. Each post carries ` i/N`, and every post — numbering included — is measured the way the
 * platform counts, so none exceeds the limit whatever the digits of i and N.
 */

/** How to split. */
export interface ThreadRules {
  /** Longest post, in `measure` units. */
  readonly limit: number;
  /** Length of a text as the platform counts it. */
  readonly measure: (text: string) => number;
  /** BCP 47 locale for sentence and word boundaries. */
  readonly locale: string;
}

function segmenter(locale: string, granularity: "sentence" | "word" | "grapheme"): Intl.Segmenter {
  try {
    return new Intl.Segmenter(locale, { granularity });
  } catch {
    return new Intl.Segmenter("en", { granularity });
  }
}

/** Splits `text` into pieces at `granularity` boundaries, spaces kept with the piece before. */
function pieces(text: string, locale: string, granularity: "sentence" | "word" | "grapheme"): string[] {
  const out: string[] = [];
  for (const seg of segmenter(locale, granularity).segment(text)) {
    if (granularity === "word" && !seg.isWordLike && out.length > 0 && seg.segment.trim() === "") {
      out[out.length - 1] += seg.segment;
    } else {
      out.push(seg.segment);
    }
  }
  return out;
}

/**
 * Packs `text` into posts that fit with a numbering of `digits` digits; undefined when one
 * grapheme cluster plus the numbering does not fit.
 */
function pack(text: string, rules: ThreadRules, digits: number): string[] | undefined {
  const widest = "9".repeat(digits);
  const posts: string[] = [];
  let current = "";
  // The widest numbering of this many digits: a post that fits with it fits with its own.
  const fits = (body: string) => rules.measure(`${body.trim()} ${widest}/${widest}`) <= rules.limit;
  const flush = () => {
    if (current.trim() !== "") posts.push(current.trim());
    current = "";
  };
  const add = (piece: string, level: number): boolean => {
    if (fits(current + piece)) {
      current += piece;
      return true;
    }
    if (current.trim() !== "") {
      flush();
      if (fits(piece)) {
        current = piece;
        return true;
      }
    }
    // The piece alone is too long: split it one level finer.
    if (level === 2) return false;
    const finer = pieces(piece, rules.locale, level === 0 ? "word" : "grapheme");
    for (const f of finer) if (!add(f, level + 1)) return false;
    return true;
  };
  for (const sentence of pieces(text, rules.locale, "sentence")) {
    if (!add(sentence, 0)) return undefined;
  }
  flush();
  return posts;
}

/**
 * The thread for `text`: `[text]` when it fits one post, else numbered posts (`… 1/3`), each within
 * the limit. Throws when the limit cannot hold one character and a numbering.
 */
export function splitThread(text: string, rules: ThreadRules): string[] {
  const body = text.trim();
  if (rules.measure(body) <= rules.limit) return [body];
  for (let digits = 1; digits <= 6; digits++) {
    const posts = pack(body, rules, digits);
    if (posts === undefined) break;
    if (posts.length < 10 ** digits) return posts.map((p, i) => `${p} ${i + 1}/${posts.length}`);
  }
  throw new RangeError(`a limit of ${rules.limit} cannot hold a thread post with its numbering`);
}
