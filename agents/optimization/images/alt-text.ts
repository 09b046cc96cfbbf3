/**
 * Alt text for WCAG 2.2 success criterion 1.1.1 (non-text content), following the W3C alt decision
 * tree (https://www.w3.org/WAI/tutorials/images/decision-tree/): decorative images get `alt=""`,
 * functional images name the action or destination, images of text repeat the text, informative
 * and complex images describe what they show briefly (a complex image's full description belongs
 * in the page).
 *
 * The writer is deterministic: it uses only what the caller said about the image (subject, visible
 * text, link, caption) and falls back to a meaningful file name, then the page title. It never adds
 * words the caller did not give — the target keyword is in the alt text when the subject says it,
 * not appended — since alt text that is not true to the image fails 1.1.1 whatever it does for search.
 */
import { AltTextRule, ImagePurpose } from "../../../gen/mesh/optimization/v1/optimization_service_pb.ts";

/** Alt-text length limit when the request says 0: what screen-reader guidance commonly gives. */
export const DEFAULT_MAX_ALT_LENGTH = 125;

/** What the writer and the checks know about the image. */
export interface AltInput {
  readonly purpose: ImagePurpose;
  readonly subject: string;
  readonly pageTitle: string;
  readonly caption: string;
  readonly targetKeyword: string;
  readonly linkUrl: string;
  readonly visibleText: string;
  /** File name of the source (or the requested stem); its words are a fallback description. */
  readonly fileStem: string;
  /** Maximum length in characters, already defaulted. */
  readonly maxLength: number;
}

/** One rule's verdict. */
export interface AltCheck {
  readonly rule: AltTextRule;
  readonly passed: boolean;
  /** Why it failed, in a sentence; "" when it passed. */
  readonly message: string;
}

/** Words that open alt text redundantly: screen readers already announce "image" or "graphic". */
const redundantPrefix =
  /^\s*(?:(?:an?|the|this)\s+)?(?:image|picture|photo|photograph|pic|graphic|img)s?\s*(?:(?:of|showing|shows|depicting|that shows|with)\b|[:\-–—]\s*)/i;

/** Whole alt texts that say nothing (compared lower-case without punctuation). */
const placeholders = new Set([
  "image",
  "images",
  "img",
  "picture",
  "pic",
  "photo",
  "photograph",
  "graphic",
  "untitled",
  "untitled image",
  "placeholder",
  "alt",
  "alt text",
  "alttext",
  "spacer",
  "blank",
  "banner",
  "thumbnail",
  "icon",
  "logo",
  "null",
  "undefined",
  "none",
  "na",
  "todo",
  "tbd",
  "default",
  "test",
  "insert alt text here",
  "description",
]);

/** Generic link words that do not say where a functional image goes. */
const genericFunction = new Set([
  "link",
  "click",
  "click here",
  "here",
  "button",
  "more",
  "read more",
  "learn more",
  "go",
  "submit",
  "arrow",
  "icon",
  "logo",
  "image link",
]);

/** Camera, phone and screenshot names that say nothing about the picture. */
const cameraName =
  /^(?:img|dsc|dscn|dscf|dcim|pxl|mvimg|gopr|sam|wp|p|photo|image|pic|picture|screenshot|screen[\s_-]?shot|untitled)[\s_-]*\d[\d_\s-]*$/i;

const imageExtension = /\.(?:jpe?g|png|gif|webp|avif|svg|tiff?|heic|heif|bmp|ico|jxl)\b/i;

/** Words too common to count as repetition. */
const stopwords = new Set(
  "a an and are as at be by for from has in into is it its of on or our the their this to with your you we".split(" "),
);

const normalise = (s: string): string =>
  s
    .toLowerCase()
    .normalize("NFKD")
    .replace(/\p{M}/gu, "")
    .replace(/[^\p{L}\p{N}]+/gu, " ")
    .trim();

const words = (s: string): string[] => normalise(s).split(" ").filter(Boolean);

/** Collapses whitespace, drops a redundant "image of" opening and capitalises the first letter. */
function tidy(text: string): string {
  let t = text.replace(/\s+/g, " ").trim();
  for (let i = 0; i < 3 && redundantPrefix.test(t); i++) t = t.replace(redundantPrefix, "").trim();
  t = t.replace(/[\s,;:–—-]+$/, "");
  return t.length === 0 ? t : t[0]?.toUpperCase() + t.slice(1);
}

/** Words that should not end a shortened alt text. */
const danglingWord =
  /\s+(?:a|an|and|at|by|for|from|in|into|of|on|or|the|to|with|near|over|under|during|while|its|their|our)$/i;

/**
 * `text` within `max` characters: cut after the last clause (comma, semicolon, dash) that keeps
 * at least half the limit, else at the last word boundary; never mid-word and without an ellipsis
 * (a screen reader would read it out).
 */
export function shorten(text: string, max: number): string {
  if (text.length <= max) return text;
  const head = text.slice(0, max + 1);
  const clause = Math.max(
    head.lastIndexOf(", "),
    head.lastIndexOf("; "),
    head.lastIndexOf(" – "),
    head.lastIndexOf(" — "),
  );
  let cut = clause >= max / 2 ? text.slice(0, clause) : head.slice(0, Math.max(head.lastIndexOf(" "), 0));
  if (cut.length === 0) cut = text.slice(0, max);
  for (let i = 0; i < 5 && danglingWord.test(cut); i++) cut = cut.replace(danglingWord, "");
  return cut.replace(/[\s,;:–—-]+$/, "");
}

/** Words of a file name, or "" when it is a camera-style or hash-like name that says nothing. */
export function fileNameWords(stem: string): string {
  const base = stem
    .replace(/^.*[\\/]/, "")
    .replace(/\.[a-z0-9]{2,5}$/i, "")
    .trim();
  if (base === "" || cameraName.test(base) || /^[0-9a-f]{8,}$/i.test(base.replace(/[-_]/g, ""))) return "";
  const kept = base
    .split(/[\s_.+-]+/)
    .filter(
      (w) =>
        w !== "" &&
        !/^\d+$/.test(w) &&
        !/^\d+(?:w|px|x|@\dx)$/i.test(w) &&
        !/^(?:scaled|final|copy|edited|v\d+|@\dx)$/i.test(w),
    );
  if (kept.length === 0 || placeholders.has(kept.join(" ").toLowerCase())) return "";
  return kept.join(" ").toLowerCase();
}

/** What a link points at, as words: the last path segment, or "<host> home page". */
function destinationWords(linkUrl: string): string {
  let url: URL;
  try {
    url = new URL(linkUrl);
  } catch {
    return "";
  }
  const segments = url.pathname.split("/").filter(Boolean);
  const last = segments.length > 0 ? fileNameWords(decodeURIComponent(segments[segments.length - 1] as string)) : "";
  if (last !== "") return last;
  return segments.length === 0 ? `${url.hostname.replace(/^www\./, "")} home page` : "";
}

/** Alt text for the image from what the caller gave; "" for decorative images or when nothing is known. */
export function writeAltText(input: AltInput): string {
  const first = (...candidates: string[]): string => {
    for (const c of candidates) {
      const t = tidy(c);
      if (t !== "") return t;
    }
    return "";
  };
  const fromFile = fileNameWords(input.fileStem);
  let text: string;
  switch (input.purpose) {
    case ImagePurpose.DECORATIVE:
      return "";
    case ImagePurpose.FUNCTIONAL:
      // The action or destination, not the picture: "Contact us", not "Envelope icon".
      text = first(input.subject, input.visibleText, destinationWords(input.linkUrl), input.pageTitle, fromFile);
      break;
    case ImagePurpose.TEXT:
      // The text itself, verbatim (a long one is not shortened: it would no longer match).
      return input.visibleText.replace(/\s+/g, " ").trim() || shorten(first(input.subject, fromFile), input.maxLength);
    case ImagePurpose.COMPLEX: {
      // A short identification; the data belongs in a long description on the page.
      const subject = tidy(input.subject);
      const firstSentence = /^(.+?[.!?])(?:\s|$)/.exec(subject)?.[1] ?? subject;
      text = first(firstSentence.replace(/[.!?]$/, ""), input.caption, fromFile, input.pageTitle);
      break;
    }
    default:
      text = first(input.subject, fromFile, input.pageTitle);
  }
  return shorten(text, input.maxLength);
}

const pass = (rule: AltTextRule): AltCheck => ({ rule, passed: true, message: "" });
const fail = (rule: AltTextRule, message: string): AltCheck => ({ rule, passed: false, message });

/** True when `text` reads as a file name or URL rather than a description. */
export function looksLikeFileName(text: string): boolean {
  const t = text.trim();
  if (/^(?:https?:\/\/|www\.|\/)/i.test(t) || imageExtension.test(t)) return true;
  if (cameraName.test(t)) return true;
  // One token of words joined by underscores, or by two hyphens or more, is a slug, not a sentence
  // (a single hyphen is a word such as "Wi-Fi").
  return !/\s/.test(t) && (/\w_\w/.test(t) || (t.match(/\w-(?=\w)/g)?.length ?? 0) >= 2);
}

/** The checks of `text` for an image of `input.purpose`, in rule order. */
export function checkAltText(text: string, input: AltInput): AltCheck[] {
  const t = text.trim();
  if (input.purpose === ImagePurpose.DECORATIVE) {
    return [
      t === ""
        ? pass(AltTextRule.EMPTY_WHEN_DECORATIVE)
        : fail(
            AltTextRule.EMPTY_WHEN_DECORATIVE,
            `Decorative images need empty alt text (alt="") so screen readers skip them; found "${t}".`,
          ),
    ];
  }
  const checks: AltCheck[] = [];
  checks.push(
    t !== ""
      ? pass(AltTextRule.PRESENT)
      : fail(
          AltTextRule.PRESENT,
          "Alt text is empty, so screen-reader users miss what the image conveys; describe it (give alt_context.subject).",
        ),
  );
  const prefix = redundantPrefix.exec(t);
  checks.push(
    prefix === null
      ? pass(AltTextRule.NO_REDUNDANT_PREFIX)
      : fail(
          AltTextRule.NO_REDUNDANT_PREFIX,
          `Alt text starts with "${prefix[0].trim()}"; screen readers already announce an image, so start with what it shows.`,
        ),
  );
  checks.push(
    t === "" || !looksLikeFileName(t)
      ? pass(AltTextRule.NOT_FILE_NAME)
      : fail(AltTextRule.NOT_FILE_NAME, `Alt text "${t}" is a file name or URL, not a description of the image.`),
  );
  checks.push(
    t === "" || !placeholders.has(normalise(t))
      ? pass(AltTextRule.NOT_PLACEHOLDER)
      : fail(AltTextRule.NOT_PLACEHOLDER, `Alt text "${t}" is a placeholder that says nothing about the image.`),
  );
  checks.push(
    t.length <= input.maxLength
      ? pass(AltTextRule.LENGTH)
      : fail(
          AltTextRule.LENGTH,
          `Alt text is ${t.length} characters, above the limit of ${input.maxLength}; keep it brief and put details in the page or a caption.`,
        ),
  );
  if (input.caption.trim() !== "") {
    const duplicate = t !== "" && normalise(t) === normalise(input.caption);
    checks.push(
      duplicate
        ? fail(
            AltTextRule.NOT_CAPTION_DUPLICATE,
            "Alt text repeats the visible caption, so screen readers read it twice; say what the caption does not.",
          )
        : pass(AltTextRule.NOT_CAPTION_DUPLICATE),
    );
  }
  checks.push(stuffingCheck(t, input.targetKeyword));
  if (input.purpose === ImagePurpose.FUNCTIONAL) {
    const generic = t === "" || genericFunction.has(normalise(t));
    checks.push(
      generic
        ? fail(
            AltTextRule.DESCRIBES_FUNCTION,
            'A linked or button image needs alt text naming its destination or action (such as "Contact us"), not a generic word.',
          )
        : pass(AltTextRule.DESCRIBES_FUNCTION),
    );
  }
  if (input.purpose === ImagePurpose.TEXT && input.visibleText.trim() !== "") {
    const matches = normalise(t).includes(normalise(input.visibleText));
    checks.push(
      matches
        ? pass(AltTextRule.MATCHES_VISIBLE_TEXT)
        : fail(
            AltTextRule.MATCHES_VISIBLE_TEXT,
            `An image of text needs alt text with the same words: "${input.visibleText.trim()}".`,
          ),
    );
  }
  return checks;
}

/** Fails when the keyword appears twice or more, or a content word three times or more. */
function stuffingCheck(text: string, keyword: string): AltCheck {
  const tokens = words(text);
  const kw = words(keyword);
  if (kw.length > 0) {
    let count = 0;
    for (let i = 0; i + kw.length <= tokens.length; i++) {
      if (kw.every((w, k) => tokens[i + k] === w)) count++;
    }
    if (count >= 2) {
      return fail(
        AltTextRule.NO_KEYWORD_STUFFING,
        `The keyword "${keyword.trim()}" appears ${count} times; once, where it describes the image, is enough.`,
      );
    }
  }
  const counts = new Map<string, number>();
  for (const w of tokens) if (w.length > 2 && !stopwords.has(w)) counts.set(w, (counts.get(w) ?? 0) + 1);
  for (const [w, n] of counts) {
    if (n >= 3) {
      return fail(
        AltTextRule.NO_KEYWORD_STUFFING,
        `The word "${w}" appears ${n} times; alt text that repeats words reads as spam.`,
      );
    }
  }
  return pass(AltTextRule.NO_KEYWORD_STUFFING);
}
