/**
 * The deterministic built-in writer: the default provider when no model server is configured, so
 * every skill works offline and tests are reproducible. It writes from templates and the facts it is
 * given, never from knowledge of its own: same task and data → same text; other data → other text.
 * Sentence openings, connectives and the order of template choices vary by a hash of the input.
 *
 * What it does, per task (`data` fields; strings or lists of strings unless said):
 * - `article`: title, keyword, audience, facts[], sections[] (headings, or `{heading, facts[]}`),
 *   callToAction → Markdown with an H1, an intro, one H2 section per heading (an outline is derived
 *   from the keyword when none is given), facts placed under the heading they share most words with,
 *   and a closing section. JSON: `{title, keyword, audience, outline[], intro, sections[{heading,
 *   paragraphs[]}], conclusion, metaDescription, wordCount}`.
 * - `outline`: the same outline alone. JSON `{title, outline[]}`.
 * - `meta`: title, keyword, facts[], description, brand → a title (≤ 60 characters) and a
 *   description (≤ 155 characters, cut at a word). JSON `{title, description}`.
 * - `summary`: text, sentences (count, default 3) → the highest-scoring sentences (term frequency),
 *   in their order. JSON `{summary, sentences[]}`.
 * - `press_release`: headline, city, date (ISO), organization, facts[], quote `{text, name, title}`,
 *   boilerplate, contact → inverted pyramid: headline, dateline and lead, the other facts, the quote,
 *   "About", contact, `###`. JSON `{headline, dateline, paragraphs[], about}`.
 * - `alt_text`: subject, setting, detail, keyword → one phrase ≤ 125 characters. JSON `{alt}`.
 * - `paragraph` and any other task: topic, audience, facts[] → one paragraph of the facts; without
 *   facts, one sentence per scalar field of the data. JSON `{text}`.
 *
 * What it cannot do: know anything not in the data, judge which facts matter, paraphrase a fact
 * (facts are used as written, first word adjusted after a connective), or follow `instructions`,
 * `messages` or an arbitrary JSON schema (a JSON request gets the structure listed above).
 */
import { chatMessagesFor } from "./openai.ts";
import { charsPerToken, estimateTokens } from "./tokens.ts";
import type { Completion, ModelBackend, StreamEvent, WriteRequest } from "./types.ts";

/** Model name the built-in writer reports. */
export const builtinModel = "builtin-writer-1";

/** A text and its structure. */
export interface BuiltinOutput {
  text: string;
  json: Record<string, unknown>;
}

// ---- hashing and choice ---------------------------------------------------------------------

/** JSON with object keys sorted, so equal data hashes equal whatever the key order. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}

/** FNV-1a, 32 bits. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A deterministic chooser seeded by the input (mulberry32). */
class Chooser {
  private state: number;
  private readonly used = new Map<readonly string[], Set<number>>();
  /** Capitalised words seen inside sentences of the input: names, kept capitalised after a connective. */
  readonly names = new Set<string>();
  constructor(seed: number) {
    this.state = seed;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An item of `pool` this pool has not given yet (all again once each was used), so openings vary. */
  pick(pool: readonly string[]): string {
    const used = this.used.get(pool) ?? new Set<number>();
    if (used.size >= pool.length) used.clear();
    const free = pool.map((_, i) => i).filter((i) => !used.has(i));
    const i = free[Math.floor(this.next() * free.length)] ?? 0;
    used.add(i);
    this.used.set(pool, used);
    return pool[i] as string;
  }
}

// ---- small NLP ----------------------------------------------------------------------------

const stopwords = new Set(
  "a an and are as at be by for from has have how in is it its of on or our that the their this to was we were what when where which who why will with you your".split(
    " ",
  ),
);

/** Words that start a fact and may be lowercased after a connective ("Also, the …"). */
const lowerable = new Set(
  "a an the this that these those most many some more less our your their its it there here prices costs each every all one two three few half about nearly almost over under".split(
    " ",
  ),
);

function words(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+(?:['’][\p{L}]+)?/gu) ?? [];
}

/** Light stem: lowercase, trailing plural `s` dropped, so "prices" meets "price". */
function stem(w: string): string {
  return w.length > 3 && w.endsWith("s") && !w.endsWith("ss") ? w.slice(0, -1) : w;
}

function contentTerms(text: string): Set<string> {
  return new Set(
    words(text)
      .filter((w) => !stopwords.has(w) && w.length > 2)
      .map(stem),
  );
}

/** A trimmed sentence: capitalised, ending in punctuation. */
function sentence(text: string): string {
  const t = text.trim().replace(/\s+/g, " ");
  if (t === "") return "";
  const s = t[0]?.toUpperCase() + t.slice(1);
  return /[.!?…"”)]$/.test(s) ? s : `${s}.`;
}

/** Every capitalised word of `data`'s strings that follows a lowercase word or comma: names (Austin, Medicaid). */
function namesIn(data: unknown, out: Set<string>): void {
  if (typeof data === "string") {
    for (const m of data.matchAll(/[\p{Ll},;]\s+(\p{Lu}[\p{Ll}]+)/gu)) if (m[1] !== undefined) out.add(m[1]);
  } else if (Array.isArray(data)) for (const d of data.slice(0, 500)) namesIn(d, out);
  else if (data !== null && typeof data === "object") for (const v of Object.values(data)) namesIn(v, out);
}

/** `fact` to follow a connective: its first word lowercased unless it is a name or an acronym. */
function afterConnective(fact: string, names: ReadonlySet<string> = new Set()): string {
  const s = sentence(fact);
  const word = (s.split(/\s/)[0] ?? "").replace(/[^\p{L}]/gu, "");
  const common = lowerable.has(word.toLowerCase()) || (/^\p{Lu}\p{Ll}+$/u.test(word) && !names.has(word));
  return common ? s[0]?.toLowerCase() + s.slice(1) : s;
}

/** "a", "a and b", "a, b and c". */
function joinList(items: readonly string[]): string {
  if (items.length <= 1) return items[0] ?? "";
  return `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

function lowerPhrase(text: string): string {
  // Keep acronyms and names: lowercase only a leading capitalised common word.
  const [first = "", ...rest] = text.trim().split(/\s+/);
  const lowered =
    /^[A-Z][a-z]+$/.test(first) &&
    (stopwords.has(first.toLowerCase()) ||
      lowerable.has(first.toLowerCase()) ||
      /^(what|why|how|when|where|which|who|costs?|questions?|next|choosing|comparing)$/i.test(first));
  return [lowered ? first.toLowerCase() : first, ...rest].join(" ");
}

function titleCase(text: string): string {
  return text
    .split(/\s+/)
    .map((w, i) =>
      i > 0 && stopwords.has(w.toLowerCase()) ? w.toLowerCase() : (w[0]?.toUpperCase() ?? "") + w.slice(1),
    )
    .join(" ");
}

/** Cut at a word boundary to at most `max` characters. */
function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  const slice = text.slice(0, max - 1);
  const at = slice.lastIndexOf(" ");
  return `${(at > max * 0.6 ? slice.slice(0, at) : slice).replace(/[\s,;:.-]+$/, "")}…`;
}

function str(v: unknown): string | undefined {
  if (typeof v === "string") return v.trim() === "" ? undefined : v.trim();
  if (typeof v === "number" && Number.isFinite(v)) return String(v);
  return undefined;
}

/** A list of strings: strings and numbers as they are, objects by their text-like field. */
function strList(v: unknown, max = 200): string[] {
  if (!Array.isArray(v)) return str(v) === undefined ? [] : [str(v) as string];
  const out: string[] = [];
  for (const item of v.slice(0, max)) {
    const s =
      str(item) ??
      (item !== null && typeof item === "object"
        ? str(
            (item as Record<string, unknown>).text ??
              (item as Record<string, unknown>).fact ??
              (item as Record<string, unknown>).heading,
          )
        : undefined);
    if (s !== undefined) out.push(s);
  }
  return out;
}

/** Term-frequency scores of `sentences` (sum of their terms' document frequencies, per term). */
function rankSentences(sentences: readonly string[]): number[] {
  const tf = new Map<string, number>();
  const terms = sentences.map((s) => [...contentTerms(s)]);
  for (const ts of terms) for (const t of ts) tf.set(t, (tf.get(t) ?? 0) + 1);
  return terms.map((ts) => (ts.length === 0 ? 0 : ts.reduce((a, t) => a + (tf.get(t) ?? 0), 0) / Math.sqrt(ts.length)));
}

function splitSentences(text: string): string[] {
  return (text.replace(/\s+/g, " ").match(/[^.!?]+[.!?]+["”)]?|[^.!?]+$/g) ?? []).map((s) => s.trim()).filter(Boolean);
}

// ---- templates ----------------------------------------------------------------------------

const introOpeners = [
  "If you are one of the {aud} looking into {kw}, this guide is for you.",
  "This guide walks {aud} through {kw}, one step at a time.",
  "Choosing {kw} is easier when you know what to look for.",
  "Many {aud} start their search for {kw} with the same questions.",
  "{Kw} can feel hard to judge at first, but it does not have to be.",
];
const introCoverage = [
  "It covers {list}.",
  "We look at {list}.",
  "Below, you will find {list}.",
  "Read on for {list}.",
];
const introHook = [
  "One fact sets the scene: {fact}",
  "Start with this: {fact}",
  "Here is a useful fact to begin: {fact}",
];
const topicSentences = [
  "Here is what {aud} should know about {h}.",
  "This part covers {h}.",
  "Let us look at {h}.",
  "A clear view of {h} helps you decide.",
  "Now turn to {h}.",
];
const firstConnectives = ["", "To begin, ", "For example, ", "First, "];
const connectives = [
  "Also, ",
  "In fact, ",
  "On top of that, ",
  "Note that ",
  "Keep in mind that ",
  "What is more, ",
  "Besides, ",
  "",
];
const keywordSentences = [
  "That matters when you compare {kw}.",
  "Keep this in mind as you weigh {kw}.",
  "It is worth checking before you settle on {kw}.",
];
const genericSentences = [
  "Compare what each option offers before you decide.",
  "Ask direct questions and write down the answers.",
  "Look for clear terms and prices in writing.",
  "Take your time, and talk to people you trust.",
  "A short visit or call often tells you more than a brochure.",
];
const closingHeadings = ["The bottom line", "Key takeaways", "In summary", "Final thoughts"];
const closings = [
  "With these points in mind, {aud} can compare {kw} with confidence.",
  "Use these facts to ask better questions and make a clear choice.",
  "Take these steps one at a time, and choosing {kw} gets simpler.",
];
const defaultOutline = [
  ["What {kw} means", "What to know about {kw}"],
  ["Why {kw} matters to {aud}", "How {kw} helps {aud}"],
  ["How to compare {kw} options", "What to look for in {kw}"],
  ["Costs to expect", "Prices and value"],
  ["Questions to ask", "Next steps"],
];

function fill(template: string, vars: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (_, k: string) => {
    const v = vars[k.toLowerCase()] ?? "";
    return k[0] === k[0]?.toUpperCase() ? (v[0]?.toUpperCase() ?? "") + v.slice(1) : v;
  });
}

// ---- tasks --------------------------------------------------------------------------------

interface Section {
  heading: string;
  facts: string[];
}

function outlineOf(data: Readonly<Record<string, unknown>>, ch: Chooser, kw: string, aud: string): Section[] {
  const given = Array.isArray(data.sections) ? data.sections.slice(0, 50) : [];
  const sections: Section[] = [];
  for (const s of given) {
    if (s !== null && typeof s === "object" && !Array.isArray(s)) {
      const o = s as Record<string, unknown>;
      const heading = str(o.heading) ?? str(o.title);
      if (heading !== undefined) sections.push({ heading, facts: strList(o.facts) });
    } else if (str(s) !== undefined) sections.push({ heading: str(s) as string, facts: [] });
  }
  if (sections.length > 0) return sections;
  return defaultOutline.map((pair) => ({ heading: fill(ch.pick(pair), { kw, aud }), facts: [] }));
}

/** Puts each fact under the section whose heading shares most terms with it (fewer facts winning ties); the rest go where fewest are. */
function placeFacts(sections: Section[], facts: readonly string[]): void {
  const headingTerms = sections.map((s) => contentTerms(s.heading));
  for (const fact of facts) {
    const terms = contentTerms(fact);
    let best = -1;
    let bestScore = 0;
    headingTerms.forEach((ht, i) => {
      let shared = 0;
      for (const t of terms) if (ht.has(t)) shared++;
      // A heading that already holds facts weighs less, so shared keywords do not pull every fact to one section.
      const score = shared === 0 ? 0 : shared / (1 + (sections[i] as Section).facts.length);
      if (score > bestScore) {
        best = i;
        bestScore = score;
      }
    });
    if (best < 0) {
      best = 0;
      sections.forEach((s, i) => {
        if (s.facts.length < (sections[best] as Section).facts.length) best = i;
      });
    }
    (sections[best] as Section).facts.push(fact);
  }
}

function article(data: Readonly<Record<string, unknown>>, ch: Chooser): BuiltinOutput {
  const facts = strList(data.facts);
  const kw = str(data.keyword) ?? [...contentTerms(facts.join(" "))][0] ?? "this topic";
  const title = str(data.title) ?? titleCase(kw);
  const aud = str(data.audience) ?? "readers";
  const vars = { kw, aud };
  const sections = outlineOf(data, ch, kw, aud);
  placeFacts(sections, facts);

  const coverage = joinList(sections.slice(0, 4).map((s) => lowerPhrase(s.heading)));
  const intro = [fill(ch.pick(introOpeners), vars), fill(ch.pick(introCoverage), { list: coverage })];
  const hook = facts.find((f) => /\d/.test(f));
  if (hook !== undefined) intro.push(fill(ch.pick(introHook), { fact: afterConnective(hook, ch.names) }));

  const bodies = sections.map((s, i) => {
    const h = lowerPhrase(s.heading);
    const out = [fill(ch.pick(topicSentences), { ...vars, h })];
    s.facts.forEach((f, j) => {
      const c = ch.pick(j === 0 ? firstConnectives : connectives);
      out.push(c === "" ? sentence(f) : c + afterConnective(f, ch.names));
    });
    if (s.facts.length === 0) out.push(ch.pick(genericSentences), ch.pick(genericSentences));
    const text = out.join(" ");
    if (i % 2 === 0 && !text.toLowerCase().includes(kw.toLowerCase())) out.push(fill(ch.pick(keywordSentences), vars));
    return { heading: s.heading, paragraphs: [out.join(" ")] };
  });

  const closingHeading = ch.pick(closingHeadings);
  const conclusion = [fill(ch.pick(closings), vars)];
  const cta = str(data.callToAction);
  if (cta !== undefined) conclusion.push(sentence(cta));

  const text = [
    `# ${title}`,
    intro.join(" "),
    ...bodies.flatMap((b) => [`## ${b.heading}`, ...b.paragraphs]),
    `## ${closingHeading}`,
    conclusion.join(" "),
  ].join("\n\n");
  const metaDescription = cut(sentence(`${title}: ${hook ?? facts[0] ?? intro[0]}`), 155);
  return {
    text,
    json: {
      title,
      keyword: kw,
      audience: aud,
      outline: sections.map((s) => s.heading),
      intro: intro.join(" "),
      sections: bodies,
      conclusion: { heading: closingHeading, text: conclusion.join(" ") },
      metaDescription,
      wordCount: words(text.replace(/^#+ /gm, "")).length,
    },
  };
}

function outline(data: Readonly<Record<string, unknown>>, ch: Chooser): BuiltinOutput {
  const facts = strList(data.facts);
  const kw = str(data.keyword) ?? [...contentTerms(facts.join(" "))][0] ?? "this topic";
  const title = str(data.title) ?? titleCase(kw);
  const headings = outlineOf(data, ch, kw, str(data.audience) ?? "readers").map((s) => s.heading);
  return {
    text: [`# ${title}`, ...headings.map((h, i) => `${i + 1}. ${h}`)].join("\n"),
    json: { title, outline: headings },
  };
}

function meta(data: Readonly<Record<string, unknown>>, ch: Chooser): BuiltinOutput {
  const facts = strList(data.facts);
  const kw = str(data.keyword);
  const brand = str(data.brand);
  const base = str(data.title) ?? (kw === undefined ? "Untitled" : titleCase(kw));
  let title = base;
  if (kw !== undefined && !base.toLowerCase().includes(kw.toLowerCase())) title = `${titleCase(kw)}: ${base}`;
  if (brand !== undefined && title.length + brand.length + 3 <= 60) title = `${title} | ${brand}`;
  title = cut(title, 60);
  const lead = str(data.description) ?? facts[0] ?? `Everything ${str(data.audience) ?? "you"} need to know`;
  const extra = facts.find((f) => f !== lead);
  const parts = [sentence(lead)];
  if (extra !== undefined) parts.push(ch.pick(["", "Also: ", "Plus: "]) + afterConnective(extra, ch.names));
  if (kw !== undefined && !parts.join(" ").toLowerCase().includes(kw.toLowerCase())) {
    parts.unshift(sentence(`${titleCase(kw)} explained`));
  }
  const description = cut(parts.join(" ").replace(/\s+/g, " ").trim(), 155);
  return { text: `Title: ${title}\nDescription: ${description}`, json: { title, description } };
}

function summary(data: Readonly<Record<string, unknown>>): BuiltinOutput {
  const text = str(data.text) ?? strList(data.facts).join(" ");
  const n = Math.max(1, Math.min(20, Math.floor(Number(data.sentences ?? 3)) || 3));
  const sentences = splitSentences(text).slice(0, 2000);
  const scores = rankSentences(sentences);
  const chosen = sentences
    .map((s, i) => ({ s, i, score: (scores[i] ?? 0) + (i === 0 ? 0.5 : 0) }))
    .sort((a, b) => b.score - a.score || a.i - b.i)
    .slice(0, n)
    .sort((a, b) => a.i - b.i)
    .map((x) => x.s);
  return { text: chosen.join(" "), json: { summary: chosen.join(" "), sentences: chosen } };
}

const months = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];

function pressRelease(data: Readonly<Record<string, unknown>>, ch: Chooser): BuiltinOutput {
  const facts = strList(data.facts);
  const org = str(data.organization) ?? str(data.organisation) ?? "The company";
  const headline =
    str(data.headline) ?? str(data.title) ?? cut(sentence(facts[0] ?? `${org} announces news`).replace(/\.$/, ""), 100);
  const city = (str(data.city) ?? "").toUpperCase();
  const iso = str(data.date);
  const d = iso === undefined ? undefined : new Date(iso);
  const date =
    d === undefined || Number.isNaN(d.getTime())
      ? (iso ?? "")
      : `${months[d.getUTCMonth()]} ${d.getUTCDate()}, ${d.getUTCFullYear()}`;
  const dateline = [city, date].filter(Boolean).join(", ");
  const [lead, ...rest] = facts;
  const leadText =
    lead === undefined
      ? `${org} today shared an update.`
      : sentence(lead).startsWith(org)
        ? sentence(lead)
        : `${org} ${ch.pick(["today announced that", "announced today that", "said today that"])} ${afterConnective(lead, ch.names)}`;
  const paragraphs = [dateline === "" ? leadText : `${dateline} — ${leadText}`];
  for (let i = 0; i < rest.length; i += 2) {
    paragraphs.push(
      rest
        .slice(i, i + 2)
        .map((f, j) => (j === 0 ? sentence(f) : ch.pick(connectives) + afterConnective(f, ch.names)))
        .join(" "),
    );
  }
  const q = data.quote !== null && typeof data.quote === "object" ? (data.quote as Record<string, unknown>) : undefined;
  const qText = str(q?.text);
  if (qText !== undefined) {
    const who = [str(q?.name), str(q?.title)].filter(Boolean).join(", ");
    paragraphs.push(`“${sentence(qText)}”${who === "" ? "" : ` said ${who}.`}`);
  }
  const about = str(data.boilerplate);
  const contact = str(data.contact);
  const text = [
    headline,
    ...paragraphs,
    ...(about === undefined ? [] : [`About ${org}`, sentence(about)]),
    ...(contact === undefined ? [] : [`Media contact: ${contact}`]),
    "###",
  ].join("\n\n");
  return { text, json: { headline, dateline, paragraphs, about: about ?? null } };
}

function altText(data: Readonly<Record<string, unknown>>): BuiltinOutput {
  const subject = str(data.subject) ?? str(data.title) ?? "Photo";
  const parts = [subject.replace(/^(an? )?(image|picture|photo) of /i, "")];
  const setting = str(data.setting);
  if (setting !== undefined) parts.push(/^(in|at|on|near|by|with)\b/i.test(setting) ? setting : `in ${setting}`);
  const detail = str(data.detail);
  if (detail !== undefined) parts.push(`, ${detail}`);
  let alt = sentence(parts.join(" ").replace(/ ,/g, ",")).replace(/\.$/, "");
  const kw = str(data.keyword);
  if (kw !== undefined && !alt.toLowerCase().includes(kw.toLowerCase()) && alt.length + kw.length + 3 <= 125)
    alt = `${alt} – ${kw}`;
  alt = cut(alt, 125);
  return { text: alt, json: { alt } };
}

function paragraph(data: Readonly<Record<string, unknown>>, ch: Chooser): BuiltinOutput {
  const facts = strList(data.facts);
  const out: string[] = [];
  const topic = str(data.topic);
  if (topic !== undefined)
    out.push(fill(ch.pick(topicSentences), { aud: str(data.audience) ?? "readers", h: lowerPhrase(topic) }));
  if (facts.length > 0) {
    facts.forEach((f, j) => {
      const c = ch.pick(j === 0 ? firstConnectives : connectives);
      out.push(c === "" ? sentence(f) : c + afterConnective(f, ch.names));
    });
  } else {
    for (const [key, value] of Object.entries(data).slice(0, 50)) {
      const v = str(value);
      if (v === undefined || key === "topic" || key === "audience") continue;
      const label = key
        .replace(/([a-z])([A-Z])/g, "$1 $2")
        .replace(/[_-]+/g, " ")
        .toLowerCase();
      out.push(sentence(`The ${label} is ${v}`));
    }
  }
  const text = out.join(" ");
  return { text, json: { text } };
}

/** Writes `task` over `data`: deterministic, see the module comment for what each task does. */
export function builtinWrite(task: string, data: Readonly<Record<string, unknown>>): BuiltinOutput {
  const ch = new Chooser(fnv1a(`${task}\u0000${canonical(data)}`));
  namesIn(data, ch.names);
  switch (task) {
    case "article":
      return article(data, ch);
    case "outline":
      return outline(data, ch);
    case "meta":
      return meta(data, ch);
    case "summary":
      return summary(data);
    case "press_release":
      return pressRelease(data, ch);
    case "alt_text":
      return altText(data);
    default:
      return paragraph(data, ch);
  }
}

/** The built-in writer as a backend: no network, finish reason `stop`, usage estimated by the provider. */
export function createBuiltinBackend(): ModelBackend {
  /** The text, cut to `maxTokens` (estimated) like a model stops at its limit. */
  const run = (request: WriteRequest, maxTokens: number): { text: string; finishReason: string } => {
    const out = builtinWrite(request.task, request.data);
    const text = request.json === undefined ? out.text : JSON.stringify(out.json);
    if (estimateTokens(text) <= maxTokens) return { text, finishReason: "stop" };
    return { text: [...text].slice(0, maxTokens * charsPerToken).join(""), finishReason: "length" };
  };
  return {
    kind: "builtin",
    model: builtinModel,
    messagesFor: chatMessagesFor,
    async complete(request, _messages, maxTokens): Promise<Completion> {
      return { ...run(request, maxTokens), usage: undefined };
    },
    async *stream(request, _messages, maxTokens): AsyncIterable<StreamEvent> {
      const { text, finishReason } = run(request, maxTokens);
      // Deltas of a word or so, as a model server sends them.
      for (const piece of text.match(/\s*\S+/g) ?? []) yield { type: "delta", text: piece };
      yield { type: "finish", reason: finishReason };
    },
  };
}
