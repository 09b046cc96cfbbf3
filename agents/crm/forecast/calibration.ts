/**
 * Stage probabilities calibrated from the CRM's own outcomes. For a stage with configured
 * probability p, and w won and l lost closed deals that passed through it, the probability is the
 * posterior mean of a Beta(k·p, k·(1 − p)) prior updated with w successes and l failures:
 * (w + k·p) / (w + l + k). With no history it is p; with much history it approaches w / (w + l);
 * the prior strength k says how many deals the configured value is worth.
 */

/** The calibrated probability of winning a deal in a stage. */
export function calibratedProbability(configured: number, won: number, lost: number, priorStrength: number): number {
  const n = won + lost + priorStrength;
  return n === 0 ? configured : (won + priorStrength * configured) / n;
}
