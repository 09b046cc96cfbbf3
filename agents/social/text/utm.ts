/**
 * Google Analytics campaign parameters on a link. The link's own query is kept byte for byte (no
 * re-encoding of parameters we do not own) and its fragment stays last; the five campaign
 * parameters describe one campaign together, so any the link already carries are replaced, not
 * mixed with ours.
 */

/** Campaign parameters to set; empty term and content are left out. */
export interface Utm {
  readonly source: string;
  readonly medium: string;
  readonly campaign: string;
  readonly term?: string;
  readonly content?: string;
}

const managed = new Set(["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"]);

function keyOf(pair: string): string {
  const eq = pair.indexOf("=");
  const raw = (eq < 0 ? pair : pair.slice(0, eq)).replace(/\+/g, " ");
  try {
    return decodeURIComponent(raw).toLowerCase();
  } catch {
    return raw.toLowerCase();
  }
}

/** `url` with the campaign parameters `utm` appended to its query (before any `#fragment`). */
export function withUtm(url: string, utm: Utm): string {
  const hash = url.indexOf("#");
  const beforeHash = hash < 0 ? url : url.slice(0, hash);
  const fragment = hash < 0 ? "" : url.slice(hash);
  const q = beforeHash.indexOf("?");
  const base = q < 0 ? beforeHash : beforeHash.slice(0, q);
  const query = q < 0 ? "" : beforeHash.slice(q + 1);
  const kept = query.split("&").filter((pair) => pair !== "" && !managed.has(keyOf(pair)));
  const ours: [string, string | undefined][] = [
    ["utm_source", utm.source],
    ["utm_medium", utm.medium],
    ["utm_campaign", utm.campaign],
    ["utm_term", utm.term],
    ["utm_content", utm.content],
  ];
  for (const [k, v] of ours) {
    if (v !== undefined && v !== "") kept.push(`${k}=${encodeURIComponent(v)}`);
  }
  return `${base}?${kept.join("&")}${fragment}`;
}
