/**
 * Kaplan–Meier with Greenwood log-log intervals against R's survival package (3.x, Debian's
 * r-cran-survival). The reference rows were produced once with:
 *
 *   library(survival); options(digits = 17)
 *   f <- survfit(Surv(futime, fustat) ~ 1, data = ovarian, conf.type = "log-log")
 *   cbind(f$time, f$n.risk, f$n.event, f$n.censor, f$surv, f$std.err, f$lower, f$upper)
 *   quantile(f, 0.5)$quantile                                    # 638
 *   f <- survfit(Surv(time, status) ~ 1, data = aml, conf.type = "log-log")   # median 27
 *   # hand cases (R gives NA for the interval where S is 0 or 1; we give the point):
 *   survfit(Surv(c(1,2,2,2,3,4,4,5), c(1,1,1,0,0,1,1,1)) ~ 1, conf.type = "log-log")  # median 4
 *   survfit(Surv(1:6, c(1,1,1,0,1,0)) ~ 1, conf.type = "log-log")                      # median 4
 *   survfit(Surv(1:4, c(1,1,0,0)) ~ 1, conf.type = "log-log")                          # median 3
 *   survfit(Surv(c(1,2,3,3), c(0,1,0,1)) ~ 1, conf.type = "log-log")
 *
 * Rows: time, n.risk, n.event, n.censor, surv, std.err, lower, upper (printed with 15 significant
 * digits, so values are compared to 1e-12).
 */
import { describe, expect, it } from "vitest";
import { type KaplanMeierCurveFit, kaplanMeier, logLogInterval } from "./kaplan-meier.ts";

type Row = [number, number, number, number, number, number, number, number];

const ovarianTime = [
  59, 115, 156, 421, 431, 448, 464, 475, 477, 563, 638, 744, 769, 770, 803, 855, 1040, 1106, 1129, 1206, 1227, 268, 329,
  353, 365, 377,
];
const ovarianStatus = [1, 1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0];
const ovarianR: Row[] = [
  [59, 26, 1, 0, 0.961538461538462, 0.0392232270276368, 0.756944289177586, 0.994491156943218],
  [115, 25, 1, 0, 0.923076923076923, 0.0566138517072298, 0.726029773211991, 0.980187805018525],
  [156, 24, 1, 0, 0.884615384615385, 0.0708288246974828, 0.683583441871182, 0.961256635371551],
  [268, 23, 1, 0, 0.846153846153846, 0.0836242010007091, 0.640434805840608, 0.939293810946659],
  [329, 22, 1, 0, 0.807692307692308, 0.0956948752938691, 0.5981137736046, 0.915076666502974],
  [353, 21, 1, 0, 0.769230769230769, 0.107417231105915, 0.556919789001685, 0.889052023744989],
  [365, 20, 1, 0, 0.730769230769231, 0.119037979174001, 0.516885735287984, 0.861502559637418],
  [377, 19, 0, 1, 0.730769230769231, 0.119037979174001, 0.516885735287984, 0.861502559637418],
  [421, 18, 0, 1, 0.730769230769231, 0.119037979174001, 0.516885735287984, 0.861502559637418],
  [431, 17, 1, 0, 0.687782805429864, 0.133590834543636, 0.470772195419574, 0.830319561602528],
  [448, 16, 0, 1, 0.687782805429864, 0.133590834543636, 0.470772195419574, 0.830319561602528],
  [464, 15, 1, 0, 0.641930618401207, 0.150360951832482, 0.422402494114822, 0.796121361435785],
  [475, 14, 1, 0, 0.596078431372549, 0.167639259514219, 0.376676946848099, 0.760207070302569],
  [477, 13, 0, 1, 0.596078431372549, 0.167639259514219, 0.376676946848099, 0.760207070302569],
  [563, 12, 1, 0, 0.54640522875817, 0.188888006252999, 0.327859017130065, 0.720675534038363],
  [638, 11, 1, 0, 0.496732026143791, 0.211588251084842, 0.282054664292128, 0.679210083341876],
  [744, 10, 0, 1, 0.496732026143791, 0.211588251084842, 0.282054664292128, 0.679210083341876],
  [769, 9, 0, 1, 0.496732026143791, 0.211588251084842, 0.282054664292128, 0.679210083341876],
  [770, 8, 0, 1, 0.496732026143791, 0.211588251084842, 0.282054664292128, 0.679210083341876],
  [803, 7, 0, 1, 0.496732026143791, 0.211588251084842, 0.282054664292128, 0.679210083341876],
  [855, 6, 0, 1, 0.496732026143791, 0.211588251084842, 0.282054664292128, 0.679210083341876],
  [1040, 5, 0, 1, 0.496732026143791, 0.211588251084842, 0.282054664292128, 0.679210083341876],
  [1106, 4, 0, 1, 0.496732026143791, 0.211588251084842, 0.282054664292128, 0.679210083341876],
  [1129, 3, 0, 1, 0.496732026143791, 0.211588251084842, 0.282054664292128, 0.679210083341876],
  [1206, 2, 0, 1, 0.496732026143791, 0.211588251084842, 0.282054664292128, 0.679210083341876],
  [1227, 1, 0, 1, 0.496732026143791, 0.211588251084842, 0.282054664292128, 0.679210083341876],
];

const amlTime = [9, 13, 13, 18, 23, 28, 31, 34, 45, 48, 161, 5, 5, 8, 8, 12, 16, 23, 27, 30, 33, 43, 45];
const amlStatus = [1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1];
const amlR: Row[] = [
  [5, 23, 2, 0, 0.91304347826087, 0.0643489452087787, 0.694947537532059, 0.977515669900713],
  [8, 21, 2, 0, 0.826086956521739, 0.095672974646988, 0.600610411237199, 0.930903558387115],
  [9, 19, 1, 0, 0.782608695652174, 0.109896745565965, 0.554211506668729, 0.903207489881887],
  [12, 18, 1, 0, 0.739130434782609, 0.1238760208523, 0.509209438754219, 0.873375781697676],
  [13, 17, 1, 1, 0.695652173913043, 0.137919321091843, 0.465641749762004, 0.841721291391763],
  [16, 15, 0, 1, 0.695652173913043, 0.137919321091843, 0.465641749762004, 0.841721291391763],
  [18, 14, 1, 0, 0.645962732919255, 0.156576641377123, 0.413952950717117, 0.805307764482079],
  [23, 13, 2, 0, 0.546583850931677, 0.196219924092724, 0.319250413971187, 0.726449173820634],
  [27, 11, 1, 0, 0.496894409937888, 0.218158583837225, 0.275565628012137, 0.684213788447816],
  [28, 10, 0, 1, 0.496894409937888, 0.218158583837225, 0.275565628012137, 0.684213788447816],
  [30, 9, 1, 0, 0.44168391994479, 0.247955755308789, 0.227381168462542, 0.637092687459888],
  [31, 8, 1, 0, 0.386473429951691, 0.281672148867962, 0.182836618648628, 0.58747691441794],
  [33, 7, 1, 0, 0.331262939958592, 0.321167749404293, 0.141825693481738, 0.535273789989068],
  [34, 6, 1, 0, 0.276052449965493, 0.369434779887807, 0.104441343233593, 0.480284660416562],
  [43, 5, 1, 0, 0.220841959972395, 0.431835682396386, 0.0709966489828615, 0.422167443380925],
  [45, 4, 1, 1, 0.165631469979296, 0.519437570766772, 0.0421142812615769, 0.360361360273183],
  [48, 2, 1, 0, 0.082815734989648, 0.877391241080104, 0.00695596679853646, 0.286760367980918],
  [161, 1, 0, 1, 0.082815734989648, 0.877391241080104, 0.00695596679853646, 0.286760367980918],
];

/** R's rows for the hand cases (NA bounds written as [0, 0] for S = 0 and [1, 1] for S = 1). */
const tiesAndZeroR: Row[] = [
  [1, 8, 1, 0, 0.875, 0.133630620956212, 0.3870000140320252, 0.981392965878966],
  [2, 7, 2, 1, 0.625, 0.273861278752583, 0.2293333224291317, 0.860698276913539],
  [3, 4, 0, 1, 0.625, 0.273861278752583, 0.2293333224291317, 0.860698276913539],
  [4, 3, 2, 0, 0.208333333333333, 0.861200712184254, 0.0100427866274431, 0.585787170361063],
  [5, 1, 1, 0, 0, Number.POSITIVE_INFINITY, 0, 0],
];
const plateauR: Row[] = [
  [1, 6, 1, 0, 0.833333333333333, 0.182574185835055, 0.273122849928356, 0.974712426690894],
  [2, 5, 1, 0, 0.666666666666667, 0.288675134594813, 0.1946166368062349, 0.904434164322516],
  [3, 4, 1, 0, 0.5, 0.408248290463863, 0.110948260351438, 0.803709236850057],
  [4, 3, 0, 1, 0.5, 0.408248290463863, 0.110948260351438, 0.803709236850057],
  [5, 2, 1, 0, 0.25, 0.816496580927726, 0.0123095164750105, 0.645948537398101],
  [6, 1, 0, 1, 0.25, 0.816496580927726, 0.0123095164750105, 0.645948537398101],
];
const censoredFirstR: Row[] = [
  [1, 4, 0, 1, 1, 0, 1, 1],
  [2, 3, 1, 0, 0.666666666666667, 0.408248290463863, 0.05407342678651676, 0.945206387272047],
  [3, 2, 1, 1, 0.333333333333333, 0.816496580927726, 0.00896162833097908, 0.774148650360833],
];

const observations = (time: number[], status: number[]) => time.map((t, i) => ({ time: t, event: status[i] === 1 }));

function expectMatchesR(fit: KaplanMeierCurveFit, rows: Row[]): void {
  expect(fit.steps.map((s) => s.time)).toEqual(rows.map((r) => r[0]));
  rows.forEach(([time, atRisk, events, censored, surv, stdErr, lower, upper], i) => {
    const s = fit.steps[i];
    expect({ time: s?.time, atRisk: s?.atRisk, events: s?.events, censored: s?.censored }).toEqual({
      time,
      atRisk,
      events,
      censored,
    });
    expect(s?.survival).toBeCloseTo(surv, 12);
    if (Number.isFinite(stdErr)) expect(s?.stdErr).toBeCloseTo(stdErr, 12);
    else expect(s?.stdErr).toBe(Number.POSITIVE_INFINITY);
    expect(s?.lower).toBeCloseTo(lower, 12);
    expect(s?.upper).toBeCloseTo(upper, 12);
  });
}

describe("kaplanMeier against R survival::survfit(conf.type = 'log-log')", () => {
  it("reproduces ovarian (no ties) including the median", () => {
    const fit = kaplanMeier(observations(ovarianTime, ovarianStatus));
    expectMatchesR(fit, ovarianR);
    expect(fit.median).toBe(638);
    expect(fit.count).toBe(26);
    expect(fit.eventCount).toBe(12);
  });

  it("reproduces aml (tied events, an event and a censoring at one time)", () => {
    const fit = kaplanMeier(observations(amlTime, amlStatus));
    expectMatchesR(fit, amlR);
    expect(fit.median).toBe(27);
  });

  it("reproduces a curve that falls to zero, and R's median where S is exactly 0.5", () => {
    const fit = kaplanMeier(observations([1, 2, 2, 2, 3, 4, 4, 5], [1, 1, 1, 0, 0, 1, 1, 1]));
    expectMatchesR(fit, tiesAndZeroR);
    expect(fit.median).toBe(4);
    const plateau = kaplanMeier(observations([1, 2, 3, 4, 5, 6], [1, 1, 1, 0, 1, 0]));
    expectMatchesR(plateau, plateauR);
    expect(plateau.median).toBe(4); // midpoint of [3, 5), where S = 0.5
    // S stays at 0.5 to the last time: the midpoint of [2, 4].
    expect(kaplanMeier(observations([1, 2, 3, 4], [1, 1, 0, 0])).median).toBe(3);
  });

  it("gives the point interval before the first event and no median when S stays above 0.5", () => {
    const fit = kaplanMeier(observations([3, 1, 3, 2], [1, 0, 0, 1]));
    expectMatchesR(fit, censoredFirstR);
    expect(kaplanMeier(observations([1, 2, 3], [1, 0, 0])).median).toBeUndefined();
    expect(kaplanMeier([]).steps).toEqual([]);
  });

  it("keeps the log-log interval inside (0, 1) where a plain interval would leave it", () => {
    // S = 0.95 with a large standard error: S ± 1.96·S·σ would pass 1.
    const [lower, upper] = logLogInterval(0.95, 0.05); // plain: 0.95 ± 0.093
    expect(lower).toBeGreaterThan(0);
    expect(upper).toBeLessThan(1);
    expect(lower).toBeLessThan(0.95);
    expect(upper).toBeGreaterThan(0.95);
  });
});
