/** The parts of untyped packages the newsletter code uses. */

declare module "jstat" {
  /** A distribution's functions (jStat.normal, jStat.chisquare). */
  interface Distribution {
    cdf(x: number, ...params: number[]): number;
    inv(p: number, ...params: number[]): number;
  }
  /** jStat's namespace (the package's default export). */
  const jStat: { normal: Distribution; chisquare: Distribution };
  export default jStat;
}

declare module "mjml" {
  /** One validation message. */
  interface MjmlError {
    line: number;
    message: string;
    tagName: string;
    formattedMessage: string;
  }
  /** What mjml2html returns. */
  interface MjmlResult {
    html: string;
    errors: MjmlError[];
  }
  /** Renders MJML to HTML (asynchronous since mjml 5). */
  function mjml2html(
    input: string,
    options?: { validationLevel?: "strict" | "soft" | "skip"; minify?: boolean; keepComments?: boolean },
  ): Promise<MjmlResult>;
  export default mjml2html;
}
