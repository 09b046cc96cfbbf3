/**
 * Community images for the directory's pages, compressed and responsive.
 *
 * The sample data has no photographs, so each community shows one of {@link SAMPLE_IMAGE_COUNT}
 * sample illustrations (a residence drawn from a seeded generator: storeys, roof, colours, trees),
 * picked by a hash of the community's id and labelled as a sample illustration in its alt text. Real
 * photos would go through the same pipeline: every source image is decoded once, resized (never
 * enlarged) to each width of {@link IMAGE_WIDTHS} and encoded as WebP with its metadata stripped; the
 * file names carry a hash of the source and the encoding, so CDNs and browsers can cache them forever
 * and a rebuild that changes nothing writes nothing. Pages use `srcset`/`sizes` with explicit
 * `width`/`height` (no layout shift) and lazy-load all but the first cards.
 */
import { createHash } from "node:crypto";
import sharp from "sharp";
import { createRandom } from "../data/index.ts";

/** How many sample illustrations there are. */
export const SAMPLE_IMAGE_COUNT = 12;
/** Widths encoded for every image: a card thumbnail at 1×, 2× and 3× density. */
export const IMAGE_WIDTHS = [160, 320, 480] as const;
/** Aspect ratio of the images (width / height). */
const ASPECT = 16 / 10;
/** Size the illustrations are drawn at (the source, before the responsive variants). */
const SOURCE_WIDTH = 960;
const SOURCE_HEIGHT = SOURCE_WIDTH / ASPECT;
/** WebP quality of the variants (illustrations compress well; photos would use 75–80). */
const WEBP_QUALITY = 72;

/** One encoded width of an image. */
export interface ImageVariant {
  /** Site path, `/img/3f9a…-320.webp`. */
  readonly path: string;
  readonly width: number;
  readonly height: number;
  readonly bytes: Buffer;
}

/** An image as the pages use it. */
export interface SiteImage {
  /** Path of the smallest variant (the `src` fallback). */
  readonly src: string;
  /** `srcset` value. */
  readonly srcset: string;
  /** Path of the largest variant (for JSON-LD `image`). */
  readonly largest: string;
  /** Intrinsic size of the smallest variant, for `width`/`height` (the aspect ratio is what matters). */
  readonly width: number;
  readonly height: number;
  /** Text alternative (WCAG 1.1.1): what the image shows. */
  readonly alt: string;
}

/** The site's images: which image each sample index shows, and the files to publish. */
export interface SiteImages {
  /** Image of a community (by its id). */
  forCommunity(communityId: string): SiteImage;
  /** Every variant file, by site path. */
  readonly files: ReadonlyMap<string, Buffer>;
}

const palettes = [
  { sky: ["#8ec9ec", "#e4f3fb"], ground: "#7fb069", name: "morning" },
  { sky: ["#f6c28b", "#fbe8d3"], ground: "#8fae5d", name: "evening" },
  { sky: ["#b8c6d1", "#eef2f5"], ground: "#86a873", name: "overcast" },
  { sky: ["#6fb3e0", "#d7ecf8"], ground: "#6e9e58", name: "clear" },
] as const;
const facades = [
  ["#efe3cf", "cream"],
  ["#d9c2a7", "sand-coloured"],
  ["#c9876b", "brick"],
  ["#f4f1ea", "white"],
  ["#b9c8c2", "sage"],
] as const;
const roofs = [
  ["#7c3f32", "red"],
  ["#4d5a63", "slate"],
  ["#5e4b3c", "brown"],
] as const;
const storeyWords = ["", "one-storey", "two-storey", "three-storey"] as const;
const treeWords = ["a tree", "two trees", "three trees"] as const;

/** A sample illustration: SVG source and what it shows. */
export function sampleIllustration(index: number): { svg: string; alt: string } {
  const r = createRandom(`directory/sample-image/${index}`);
  const W = SOURCE_WIDTH;
  const H = SOURCE_HEIGHT;
  const palette = r.pick(palettes);
  const [facade, facadeName] = r.pick(facades);
  const [roof, roofName] = r.pick(roofs);
  const storeys = r.int(1, 3);
  const horizon = H * 0.78;
  const storeyH = 92;
  const bw = r.int(520, 700);
  const bx = (W - bw) / 2 + r.int(-60, 60);
  const bh = storeys * storeyH + 30;
  const by = horizon - bh;
  const gable = r.chance(0.55);
  const roofH = gable ? r.int(70, 110) : 26;
  const parts: string[] = [
    `<defs><linearGradient id="s" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="${palette.sky[0]}"/><stop offset="1" stop-color="${palette.sky[1]}"/></linearGradient></defs>`,
    `<rect width="${W}" height="${H}" fill="url(#s)"/>`,
    `<rect y="${horizon}" width="${W}" height="${H - horizon}" fill="${palette.ground}"/>`,
    `<rect x="${bx}" y="${by}" width="${bw}" height="${bh}" fill="${facade}"/>`,
    gable
      ? `<polygon points="${bx - 24},${by + 4} ${bx + bw / 2},${by - roofH} ${bx + bw + 24},${by + 4}" fill="${roof}"/>`
      : `<rect x="${bx - 14}" y="${by - roofH}" width="${bw + 28}" height="${roofH}" fill="${roof}"/>`,
  ];
  // Windows in a grid on every storey; the door in the middle of the ground floor.
  const cols = Math.floor(bw / 95);
  const gap = bw / cols;
  const door = Math.floor(cols / 2);
  for (let s = 0; s < storeys; s++) {
    const wy = horizon - (s + 1) * storeyH + 18;
    for (let c = 0; c < cols; c++) {
      const wx = bx + c * gap + gap / 2;
      if (s === 0 && c === door) {
        parts.push(
          `<rect x="${wx - 26}" y="${horizon - 74}" width="52" height="74" fill="#5b4636"/>`,
          `<rect x="${wx - 40}" y="${horizon - 84}" width="80" height="12" fill="${roof}"/>`,
        );
      } else {
        parts.push(`<rect x="${wx - 20}" y="${wy}" width="40" height="52" rx="3" fill="#4c7391" opacity=".9"/>`);
      }
    }
  }
  const doorX = bx + door * gap + gap / 2;
  parts.push(
    `<polygon points="${doorX - 26},${horizon} ${doorX + 26},${horizon} ${doorX + 90},${H} ${doorX - 90},${H}" fill="#d8cdb6"/>`,
  );
  const trees = r.int(1, 3);
  for (let t = 0; t < trees; t++) {
    const left = t % 2 === 0;
    const tx = left ? r.int(50, Math.max(60, bx - 40)) : r.int(Math.min(W - 60, bx + bw + 40), W - 50);
    const tr = r.int(45, 75);
    parts.push(
      `<rect x="${tx - 8}" y="${horizon - 40}" width="16" height="70" fill="#5b3b25"/>`,
      `<circle cx="${tx}" cy="${horizon - 40 - tr * 0.6}" r="${tr}" fill="${r.pick(["#3d7a3a", "#4f8a43", "#2f6b3a"])}"/>`,
    );
  }
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">${parts.join("")}</svg>`;
  const alt = `Sample illustration: a ${storeyWords[storeys]} ${facadeName} residence with a ${roofName} ${gable ? "gabled" : "flat"} roof and ${treeWords[trees - 1]}, ${palette.name} sky`;
  return { svg, alt };
}

const hex = (b: Buffer | string): string => createHash("sha256").update(b).digest("hex");

/** Decodes `source` once and encodes it at each width (never enlarged), WebP, metadata stripped. */
export async function encodeResponsive(
  source: Buffer,
  widths: readonly number[] = IMAGE_WIDTHS,
): Promise<ImageVariant[]> {
  const name = hex(`${hex(source)}\nwebp q${WEBP_QUALITY}`).slice(0, 16);
  const decoded = sharp(source).rotate();
  const meta = await decoded.metadata();
  const sourceWidth = meta.autoOrient?.width ?? meta.width ?? 0;
  const out: ImageVariant[] = [];
  for (const want of widths) {
    const { data, info } = await decoded
      .clone()
      .resize({ width: want, withoutEnlargement: true })
      .webp({ quality: WEBP_QUALITY, effort: 5 })
      .toBuffer({ resolveWithObject: true });
    out.push({ path: `/img/${name}-${info.width}.webp`, width: info.width, height: info.height, bytes: data });
    if (want >= sourceWidth) break; // wider variants would be the same pixels
  }
  return out;
}

/** How a set of variants is referenced from a page. */
export function siteImage(variants: readonly ImageVariant[], alt: string): SiteImage {
  const first = variants[0];
  const last = variants[variants.length - 1];
  if (first === undefined || last === undefined) throw new Error("an image needs at least one variant");
  return {
    src: first.path,
    srcset: variants.map((v) => `${v.path} ${v.width}w`).join(", "),
    largest: last.path,
    width: first.width,
    height: first.height,
    alt,
  };
}

/** The sample illustration a community shows (FNV-1a of its id). */
export function sampleImageIndex(communityId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < communityId.length; i++) h = Math.imul(h ^ communityId.charCodeAt(i), 0x01000193);
  return (h >>> 0) % SAMPLE_IMAGE_COUNT;
}

let sample: Promise<SiteImages> | undefined;

/** The sample illustrations, encoded once per process (about a second on two cores). */
export function sampleSiteImages(): Promise<SiteImages> {
  sample ??= (async () => {
    const images: SiteImage[] = [];
    const files = new Map<string, Buffer>();
    for (let i = 0; i < SAMPLE_IMAGE_COUNT; i++) {
      const { svg, alt } = sampleIllustration(i);
      const variants = await encodeResponsive(Buffer.from(svg));
      for (const v of variants) files.set(v.path, v.bytes);
      images.push(siteImage(variants, alt));
    }
    return {
      forCommunity: (id) => images[sampleImageIndex(id)] as SiteImage,
      files,
    };
  })();
  return sample;
}
