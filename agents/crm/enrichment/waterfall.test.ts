import { describe, expect, it } from "vitest";
import { EnrichableField, ProviderOutcome } from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { text } from "./fields.ts";
import { normalizePhone } from "./normalize.ts";
import type { EnrichmentProvider, Found, Subject } from "./providers.ts";
import { runWaterfall } from "./waterfall.ts";

const subject: Subject = {
  email: "ada@acme.co.uk",
  emailDomain: "acme.co.uk",
  freeMail: false,
  disposable: false,
  companyDomain: "",
  givenName: "Ada",
  familyName: "Lovelace",
  company: "",
  phone: normalizePhone("", "GB"),
  city: "",
  region: "",
  postalCode: "",
  countryCode: "GB",
};

/** A provider answering fixed values (or failing), counting its calls. */
function fake(name: string, answer: Array<[EnrichableField, string, number]> | Error) {
  const p = {
    calls: 0,
    provider: {
      name,
      cached: false,
      query: () => ({ email: subject.email }),
      lookup: async (): Promise<Found[]> => {
        p.calls++;
        if (answer instanceof Error) throw answer;
        return answer.map(([field, value, confidence]) => ({ field, found: { value: text(value) }, confidence }));
      },
    } satisfies EnrichmentProvider,
  };
  return p;
}

const run = (providers: EnrichmentProvider[], wanted: EnrichableField[], minConfidence = 0.5) =>
  runWaterfall({
    subject,
    wanted: new Set(wanted),
    minConfidence,
    maxCacheAgeMs: 0,
    providers,
    cache: undefined,
    now: () => new Date(),
    signal: new AbortController().signal,
  });

const { COMPANY_NAME, JOB_TITLE, INDUSTRY } = EnrichableField;

describe("enrichment waterfall", () => {
  it("asks providers in order and skips those after every wanted field is filled", async () => {
    const a = fake("a", [[COMPANY_NAME, "Acme", 0.9]]);
    const b = fake("b", [[JOB_TITLE, "CTO", 0.8]]);
    const c = fake("c", [[JOB_TITLE, "Engineer", 0.95]]);
    const r = await run([a.provider, b.provider, c.provider], [COMPANY_NAME, JOB_TITLE]);
    expect(r.calls.map((x) => [x.provider, x.outcome])).toEqual([
      ["a", ProviderOutcome.HIT],
      ["b", ProviderOutcome.HIT],
      ["c", ProviderOutcome.SKIPPED],
    ]);
    expect(c.calls).toBe(0);
    expect([...r.best.values()].map((x) => [x.field, x.source])).toEqual([
      [COMPANY_NAME, "a"],
      [JOB_TITLE, "b"],
    ]);
  });

  it("replaces a value only with a strictly higher confidence; ties keep the earlier provider", async () => {
    const a = fake("a", [[COMPANY_NAME, "Acme (guess)", 0.3]]);
    const b = fake("b", [
      [COMPANY_NAME, "Acme Ltd", 0.8],
      [INDUSTRY, "Software", 0.6],
    ]);
    const c = fake("c", [[INDUSTRY, "Computer software", 0.6]]);
    // INDUSTRY is not wanted: b's industry is a candidate, never the best, and does not keep c from being skipped.
    const r = await run([a.provider, b.provider, c.provider], [COMPANY_NAME]);
    expect(r.best.get(COMPANY_NAME)?.found.value.kind.value).toBe("Acme Ltd");
    expect(r.best.has(INDUSTRY)).toBe(false);
    expect(r.candidates.map((x) => [x.source, x.field])).toEqual([
      ["a", COMPANY_NAME],
      ["b", COMPANY_NAME],
      ["b", INDUSTRY],
    ]);
    expect(r.calls[2]?.outcome).toBe(ProviderOutcome.SKIPPED);

    const tie1 = fake("first", [[JOB_TITLE, "CTO", 0.6]]);
    const tie2 = fake("second", [[JOB_TITLE, "Chief Technology Officer", 0.6]]);
    const r2 = await run([tie1.provider, tie2.provider], [JOB_TITLE], 0.7);
    expect(tie2.calls).toBe(1); // 0.6 < 0.7: the field still needed a better value
    expect(r2.best.get(JOB_TITLE)?.source).toBe("first");
  });

  it("reports a failing provider and asks the next one", async () => {
    const a = fake("a", new Error("HTTP 500 after 3 attempts"));
    const b = fake("b", [[COMPANY_NAME, "Acme", 0.9]]);
    const r = await run([a.provider, b.provider], [COMPANY_NAME]);
    expect(r.calls.map((x) => [x.provider, x.outcome, x.error])).toEqual([
      ["a", ProviderOutcome.ERROR, "HTTP 500 after 3 attempts"],
      ["b", ProviderOutcome.HIT, ""],
    ]);
    expect(r.best.get(COMPANY_NAME)?.source).toBe("b");
  });

  it("reports a provider with nothing to look up as a miss without asking it", async () => {
    const none = { ...fake("none", []).provider, query: () => undefined };
    const r = await run([none], [COMPANY_NAME]);
    expect(r.calls.map((x) => x.outcome)).toEqual([ProviderOutcome.MISS]);
  });
});
