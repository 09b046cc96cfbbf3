/**
 * BlurHash encoder (https://github.com/woltapp/blurhash, the reference algorithm): the image as a
 * few cosine components in linear light, the DC term as sRGB in 4 base-83 digits and each AC term
 * quantised to 19 levels per channel against the largest AC magnitude.
 *
 * Written here rather than taken from npm: it is 60 lines, and the pixels it needs come from
 * sharp's thumbnail of the oriented image, so the hash matches what the variants show.
 */

const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";

/** `n` in `length` base-83 digits, most significant first. */
export function encode83(n: number, length: number): string {
  let out = "";
  for (let i = 1; i <= length; i++) out += digits[Math.floor(n / 83 ** (length - i)) % 83];
  return out;
}

function srgbToLinear(value: number): number {
  const v = value / 255;
  return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
}

function linearToSrgb(value: number): number {
  const v = Math.max(0, Math.min(1, value));
  return v <= 0.0031308 ? Math.trunc(v * 12.92 * 255 + 0.5) : Math.trunc((1.055 * v ** (1 / 2.4) - 0.055) * 255 + 0.5);
}

const signPow = (value: number, exp: number): number => Math.sign(value) * Math.abs(value) ** exp;

/**
 * BlurHash of `width` × `height` pixels, `channels` (3 or 4; alpha is ignored) bytes per pixel in
 * row order, with `componentsX` × `componentsY` components (each 1 to 9).
 */
export function encodeBlurhash(
  pixels: Uint8Array,
  width: number,
  height: number,
  channels: number,
  componentsX: number,
  componentsY: number,
): string {
  if (componentsX < 1 || componentsX > 9 || componentsY < 1 || componentsY > 9) {
    throw new RangeError("BlurHash components must be between 1 and 9");
  }
  if (pixels.length < width * height * channels) throw new RangeError("BlurHash pixels are shorter than the image");
  // Linearise once: the factor loops read every pixel componentsX × componentsY times.
  const linear = new Float64Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    for (let c = 0; c < 3; c++) linear[p * 3 + c] = srgbToLinear(pixels[p * channels + c] as number);
  }
  const factors: [number, number, number][] = [];
  for (let j = 0; j < componentsY; j++) {
    for (let i = 0; i < componentsX; i++) {
      const normalisation = i === 0 && j === 0 ? 1 : 2;
      let r = 0;
      let g = 0;
      let b = 0;
      for (let y = 0; y < height; y++) {
        const cy = Math.cos((Math.PI * j * y) / height);
        for (let x = 0; x < width; x++) {
          const basis = normalisation * Math.cos((Math.PI * i * x) / width) * cy;
          const p = (y * width + x) * 3;
          r += basis * (linear[p] as number);
          g += basis * (linear[p + 1] as number);
          b += basis * (linear[p + 2] as number);
        }
      }
      const scale = 1 / (width * height);
      factors.push([r * scale, g * scale, b * scale]);
    }
  }
  const [dc, ...ac] = factors as [[number, number, number], ...[number, number, number][]];
  let hash = encode83(componentsX - 1 + (componentsY - 1) * 9, 1);
  let maximum = 1;
  if (ac.length > 0) {
    const actualMaximum = Math.max(...ac.map((f) => Math.max(Math.abs(f[0]), Math.abs(f[1]), Math.abs(f[2]))));
    const quantised = Math.floor(Math.max(0, Math.min(82, Math.floor(actualMaximum * 166 - 0.5))));
    maximum = (quantised + 1) / 166;
    hash += encode83(quantised, 1);
  } else {
    hash += encode83(0, 1);
  }
  hash += encode83((linearToSrgb(dc[0]) << 16) + (linearToSrgb(dc[1]) << 8) + linearToSrgb(dc[2]), 4);
  const quant = (v: number): number =>
    Math.floor(Math.max(0, Math.min(18, Math.floor(signPow(v / maximum, 0.5) * 9 + 9.5))));
  for (const f of ac) hash += encode83(quant(f[0]) * 19 * 19 + quant(f[1]) * 19 + quant(f[2]), 2);
  return hash;
}
