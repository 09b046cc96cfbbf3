/** Parsing of the HTML `srcset` attribute, shared by the technical audit and page-speed skills. */

/** URLs of a `srcset`'s candidates, by the HTML standard's parsing rules (URLs may contain commas). */
export function srcsetUrls(srcset: string): string[] {
  const urls: string[] = [];
  const s = srcset;
  let i = 0;
  while (i < s.length) {
    while (i < s.length && /[\s,]/.test(s[i] as string)) i++;
    const start = i;
    while (i < s.length && !/\s/.test(s[i] as string)) i++;
    let url = s.slice(start, i);
    if (url.endsWith(",")) {
      url = url.replace(/,+$/, "");
    } else {
      // Descriptors run to the next comma outside parentheses.
      let depth = 0;
      for (; i < s.length; i++) {
        const c = s[i];
        if (c === "(") depth++;
        else if (c === ")") depth = Math.max(0, depth - 1);
        else if (c === "," && depth === 0) break;
      }
      i++;
    }
    if (url !== "") urls.push(url);
  }
  return urls;
}
