import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  type AnalyzeLocalSeoRequest,
  AnalyzeLocalSeoRequestSchema,
  type AnalyzeLocalSeoResponse,
  type CitationConsistency,
  DayOfWeek,
  type FieldConsistency,
  FindingSeverity,
  LocalBusinessProfileSchema,
  type LocalSeoIssue,
  NapField,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import {
  compareAddresses,
  formatParsedAddress,
  jaroWinkler,
  normalizeBusinessName,
  normalizePhone,
  normalizeWebsite,
  parseAddressParts,
  parseAddressText,
} from "../local/nap.ts";
import { analyzeLocalSeo } from "./local-seo.ts";

type RequestInit = MessageInitShape<typeof AnalyzeLocalSeoRequestSchema>;
type BusinessInit = MessageInitShape<typeof LocalBusinessProfileSchema>;

/** A senior-living community with a complete business profile. */
const mapleGrove: BusinessInit = {
  id: "https://directory.example.com/tx/austin/maple-grove-senior-living#business",
  name: "Maple Grove Senior Living",
  address: {
    streetLines: ["4100 North Lamar Boulevard", "Suite 200"],
    locality: "Austin",
    region: "TX",
    postalCode: "78756",
    countryCode: "US",
  },
  phone: "(512) 555-0187",
  website: "https://maplegrove.example.com/austin",
  categories: ["Assisted living facility", "Memory care"],
  openingHours: [
    {
      daysOfWeek: [
        DayOfWeek.MONDAY,
        DayOfWeek.TUESDAY,
        DayOfWeek.WEDNESDAY,
        DayOfWeek.THURSDAY,
        DayOfWeek.FRIDAY,
        DayOfWeek.SATURDAY,
        DayOfWeek.SUNDAY,
      ],
      opens: "09:00",
      closes: "17:00",
    },
  ],
  geo: { latitude: 30.3192, longitude: -97.7411 },
  description: "Assisted living and memory care in the Brentwood neighbourhood of Austin.",
  images: ["https://maplegrove.example.com/img/austin-front.webp"],
  priceRange: "$4,200–$6,800 per month",
};

/** Four sources: the community's own site, two directories that agree, one with an old phone, one with another suite. */
const mapleGroveCitations: RequestInit["citations"] = [
  {
    sourceName: "Community website",
    url: "https://maplegrove.example.com/austin/contact",
    name: "Maple Grove Senior Living",
    addressText: "4100 N. Lamar Blvd., Ste. 200, Austin, Texas 78756-3401",
    phone: "512-555-0187",
    website: "https://www.maplegrove.example.com/austin/",
  },
  {
    sourceName: "A Place for Mom",
    url: "https://www.aplaceformom.example/maple-grove-austin",
    name: "Maple Grove Senior Living, LLC",
    address: { streetLines: ["4100 N Lamar Blvd Ste 200"], locality: "Austin", region: "Texas", postalCode: "78756" },
    phone: "+1 512 555 0187",
  },
  {
    sourceName: "Caring.com",
    url: "https://www.caring.example/maple-grove-senior-living-austin",
    name: "Maple Grove Senior Living",
    addressText: "4100 North Lamar Boulevard, Suite 210, Austin, TX 78756",
    phone: "(512) 555-0187",
  },
  {
    sourceName: "Yelp",
    url: "https://www.yelp.example/biz/maple-grove-senior-living-austin",
    name: "Maple Grove Senior Living",
    addressText: "4100 N Lamar Blvd #200, Austin, TX 78756",
    phone: "(512) 555-0100",
  },
];

/** A request for Maple Grove unless `init` names another business. */
function request(init: RequestInit): AnalyzeLocalSeoRequest {
  const req = create(AnalyzeLocalSeoRequestSchema, init);
  if (!("business" in init)) req.business = create(LocalBusinessProfileSchema, mapleGrove);
  return req;
}

function run(init: RequestInit): Promise<AnalyzeLocalSeoResponse> {
  return analyzeLocalSeo({}, request(init));
}

function citation(res: AnalyzeLocalSeoResponse, source: string): CitationConsistency {
  const found = res.citations.find((c) => c.sourceName === source);
  if (found === undefined) throw new Error(`no citation "${source}"`);
  return found;
}

function fieldOf(c: CitationConsistency, f: NapField): FieldConsistency {
  const found = c.fields.find((x) => x.field === f);
  if (found === undefined) throw new Error(`no field ${f} for "${c.sourceName}"`);
  return found;
}

function issue(res: AnalyzeLocalSeoResponse, ruleId: string): LocalSeoIssue {
  const found = res.issues.find((i) => i.ruleId === ruleId);
  if (found === undefined) throw new Error(`no issue "${ruleId}" in ${res.issues.map((i) => i.ruleId).join(", ")}`);
  return found;
}

/** Runs the skill and returns the InvalidInputError it throws. */
async function invalid(req: AnalyzeLocalSeoRequest): Promise<InvalidInputError> {
  try {
    await analyzeLocalSeo({}, req);
  } catch (err) {
    if (err instanceof InvalidInputError) return err;
    throw err;
  }
  throw new Error("expected InvalidInputError");
}

describe("Jaro-Winkler (hand-computed)", () => {
  it("MARTHA / MARHTA: 6 matches, 1 transposition, common prefix 3", () => {
    // Jaro = (6/6 + 6/6 + (6-1)/6) / 3 = 17/18; JW = 17/18 + 3 * 0.1 * (1 - 17/18) = 0.961111…
    expect(jaroWinkler("MARTHA", "MARHTA")).toBeCloseTo(17 / 18 + 0.3 / 18, 12);
    expect(jaroWinkler("MARTHA", "MARHTA")).toBeCloseTo(0.961111, 6);
  });

  it("DIXON / DICKSONX: 4 matches in an 8-character window, no transposition, prefix 2", () => {
    // Jaro = (4/5 + 4/8 + 4/4) / 3 = 0.766667; JW = 0.766667 + 2 * 0.1 * 0.233333 = 0.813333
    expect(jaroWinkler("DIXON", "DICKSONX")).toBeCloseTo(0.813333, 6);
  });

  it("gardens / garden: the dropped plural costs little", () => {
    // Jaro = (6/7 + 6/6 + 6/6) / 3 = 20/21; JW = 20/21 + 4 * 0.1 * (1/21) = 20.4/21
    expect(jaroWinkler("gardens", "garden")).toBeCloseTo(20.4 / 21, 12);
  });

  it("identical strings score 1 and an empty string scores 0", () => {
    expect(jaroWinkler("maple grove", "maple grove")).toBe(1);
    expect(jaroWinkler("", "maple grove")).toBe(0);
  });
});

describe("name normalisation", () => {
  it("folds case, punctuation, accents, legal suffixes, a leading 'the' and & into 'and'", () => {
    expect(normalizeBusinessName("The Oaks of Mesa, L.L.C.")).toBe("oaks of mesa");
    expect(normalizeBusinessName("Smith & Sons Senior Care, Inc.")).toBe("smith and sons senior care");
    expect(normalizeBusinessName("SMITH AND SONS SENIOR CARE")).toBe("smith and sons senior care");
    expect(normalizeBusinessName("St. Mary's Résidence Co.")).toBe("st marys residence");
  });

  it("keeps a name that is only a legal word", () => {
    expect(normalizeBusinessName("Company")).toBe("company");
  });
});

describe("address normalisation", () => {
  it('reads "123 North Main Street, Suite 4" and "123 N Main St Ste 4" as the same address', () => {
    const long = parseAddressText("123 North Main Street, Suite 4, Austin, Texas 78704-1234");
    const short = parseAddressText("123 N Main St Ste 4 Austin TX 78704", ["AUSTIN"]);
    expect(formatParsedAddress(long)).toBe("123 N MAIN ST STE 4, AUSTIN, TX 78704");
    expect(short).toEqual(long);
    const parts = parseAddressParts({
      streetLines: ["123 North Main Street", "Suite 4"],
      locality: "Austin",
      region: "Texas",
      postalCode: "787041234",
    });
    expect(parts).toEqual(long);
    expect(compareAddresses(parts, short, 0.92)).toEqual({ similarity: 1, differences: [], unitsOnly: false });
  });

  it("abbreviates suffixes, directionals, ordinals, Saint and floors; drops the country", () => {
    expect(
      formatParsedAddress(parseAddressText("10 Saint Louis Avenue Fourth Floor, St. Louis, Missouri 63101, USA")),
    ).toBe("10 ST LOUIS AVE FL 4, ST LOUIS, MO 63101");
    expect(formatParsedAddress(parseAddressText("88 Southwest First Parkway, Portland, OR"))).toBe(
      "88 SW 1ST PKWY, PORTLAND, OR",
    );
  });

  it("finds the state only with an anchor: a ZIP, a comma or the known city", () => {
    expect(parseAddressText("500 Main Ct").state).toBe("");
    expect(parseAddressText("Austin TX", ["AUSTIN"])).toMatchObject({ street: [], city: ["AUSTIN"], state: "TX" });
    expect(parseAddressText("500 Main Ct, Hartford, CT 06103").state).toBe("CT");
    expect(parseAddressText("1200 Barton Springs Rd Austin TX", ["AUSTIN"])).toMatchObject({
      street: ["BARTON", "SPGS", "RD"],
      city: ["AUSTIN"],
      state: "TX",
    });
  });

  it("treats STE 200 and #200 as one door but STE 200 and STE 210 as two", () => {
    const canonical = parseAddressText("4100 N Lamar Blvd Ste 200, Austin, TX 78756");
    expect(
      compareAddresses(canonical, parseAddressText("4100 N Lamar Blvd #200, Austin, TX 78756"), 0.92).similarity,
    ).toBe(1);
    const other = compareAddresses(canonical, parseAddressText("4100 N Lamar Blvd Ste 210, Austin, TX 78756"), 0.92);
    expect(other).toEqual({ similarity: 0, differences: ["unit: STE 200 vs STE 210"], unitsOnly: true });
  });

  it("compares house number and ZIP exactly and street and city with Jaro-Winkler", () => {
    const canonical = parseAddressText("4100 N Lamar Blvd, Austin, TX 78756");
    const typo = compareAddresses(canonical, parseAddressText("4100 N Lamarr Blvd, Austin, TX 78756"), 0.92);
    expect(typo.similarity).toBeGreaterThan(0.92);
    expect(typo.differences).toEqual([]);
    const moved = compareAddresses(canonical, parseAddressText("4110 N Lamar Blvd, Austin, TX 78757"), 0.92);
    expect(moved.similarity).toBe(0);
    expect(moved.differences).toEqual(["house number: 4100 vs 4110", "ZIP: 78756 vs 78757"]);
    expect(moved.unitsOnly).toBe(false);
  });
});

describe("phone and website normalisation", () => {
  it("formats every common way of writing one US number as the same E.164", () => {
    for (const written of ["(512) 555-0142", "512.555.0142", "512-555-0142", "+1 512 555 0142", "1-512-555-0142"]) {
      expect(normalizePhone(written, "US")).toEqual({ e164: "+15125550142", comparable: "+15125550142" });
    }
    expect(normalizePhone("(512) 555-0142 ext. 12", "US").e164).toBe("+15125550142");
    expect(normalizePhone("020 7946 0958", "GB").e164).toBe("+442079460958");
  });

  it("does not invent an area code for a seven-digit number", () => {
    expect(normalizePhone("555-0142", "US")).toEqual({ e164: "", comparable: "5550142" });
    expect(normalizePhone("call us", "US")).toEqual({ e164: "", comparable: "" });
  });

  it("compares websites by host and path, without www, trailing slash or tracking parameters", () => {
    expect(normalizeWebsite("https://www.MapleGrove.example.com/austin/?utm_source=yelp")).toBe(
      "maplegrove.example.com/austin",
    );
    expect(normalizeWebsite("maplegrove.example.com/austin")).toBe("maplegrove.example.com/austin");
  });
});

describe("analyzeLocalSeo: a senior-living community with four sources", () => {
  it("scores each source and flags the old phone and the other suite", async () => {
    const res = await run({ citations: mapleGroveCitations });
    expect(res.citations.map((c) => c.sourceName)).toEqual([
      "Community website",
      "A Place for Mom",
      "Caring.com",
      "Yelp",
    ]);

    const site = citation(res, "Community website");
    expect(site.consistent).toBe(true);
    expect(site.consistencyScore).toBe(100);
    expect(fieldOf(site, NapField.ADDRESS)).toMatchObject({
      canonicalValue: "4100 N LAMAR BLVD STE 200, AUSTIN, TX 78756",
      listedValue: "4100 N LAMAR BLVD STE 200, AUSTIN, TX 78756",
      similarity: 1,
      consistent: true,
    });
    expect(fieldOf(site, NapField.WEBSITE)).toMatchObject({ similarity: 1, consistent: true, present: true });

    const apfm = citation(res, "A Place for Mom");
    expect(apfm.consistent).toBe(true);
    expect(apfm.consistencyScore).toBe(100);
    expect(fieldOf(apfm, NapField.NAME)).toMatchObject({ listedValue: "maple grove senior living", similarity: 1 });
    expect(fieldOf(apfm, NapField.WEBSITE)).toMatchObject({ present: false, consistent: false });

    const caring = citation(res, "Caring.com");
    expect(caring.consistent).toBe(false);
    expect(caring.consistencyScore).toBe(60); // name 30 + phone 30; the address (40) names another suite
    expect(fieldOf(caring, NapField.ADDRESS)).toMatchObject({
      listedValue: "4100 N LAMAR BLVD STE 210, AUSTIN, TX 78756",
      similarity: 0,
      consistent: false,
      present: true,
    });

    const yelp = citation(res, "Yelp");
    expect(yelp.consistent).toBe(false);
    expect(yelp.consistencyScore).toBe(70); // name 30 + address 40; the phone is the old one
    expect(fieldOf(yelp, NapField.PHONE)).toMatchObject({
      canonicalValue: "+15125550187",
      listedValue: "+15125550100",
      similarity: 0,
      consistent: false,
    });
    expect(fieldOf(yelp, NapField.ADDRESS).consistent).toBe(true); // "#200" is suite 200

    expect(res.overallConsistencyScore).toBe(82.5); // (100 + 100 + 60 + 70) / 4
    expect(res.canonicalPhoneE164).toBe("+15125550187");
  });

  it("lists the issues most severe first, naming the sources and what differs", async () => {
    const res = await run({ citations: mapleGroveCitations });
    expect(res.issues.map((i) => i.ruleId)).toEqual([
      "nap.phone-mismatch",
      "nap.suite-mismatch",
      "nap.website-missing",
    ]);
    const phone = issue(res, "nap.phone-mismatch");
    expect(phone).toMatchObject({ severity: FindingSeverity.CRITICAL, field: NapField.PHONE, sourceNames: ["Yelp"] });
    expect(phone.message).toContain("Yelp: +15125550100");
    expect(phone.recommendation).toContain("+15125550187");
    const suite = issue(res, "nap.suite-mismatch");
    expect(suite).toMatchObject({
      severity: FindingSeverity.WARNING,
      field: NapField.ADDRESS,
      sourceNames: ["Caring.com"],
    });
    expect(suite.message).toContain("unit: STE 200 vs STE 210");
    expect(suite.recommendation).toContain("4100 North Lamar Boulevard, Suite 200, Austin, TX 78756");
    expect(issue(res, "nap.website-missing")).toMatchObject({
      severity: FindingSeverity.NOTICE,
      sourceNames: ["A Place for Mom", "Caring.com", "Yelp"],
    });
  });

  it("reports a complete profile and LocalBusiness JSON-LD eligible for the rich result", async () => {
    const res = await run({ citations: mapleGroveCitations });
    expect(res.missingProfileFields).toEqual([]);
    expect(res.profileCompleteness).toBe(100);
    const doc = JSON.parse(res.localBusinessJsonLd);
    expect(doc).toEqual({
      "@context": "https://schema.org",
      "@type": "LocalBusiness",
      "@id": "https://directory.example.com/tx/austin/maple-grove-senior-living#business",
      name: "Maple Grove Senior Living",
      address: {
        "@type": "PostalAddress",
        streetAddress: "4100 North Lamar Boulevard, Suite 200",
        addressLocality: "Austin",
        addressRegion: "TX",
        postalCode: "78756",
        addressCountry: "US",
      },
      telephone: "+15125550187",
      url: "https://maplegrove.example.com/austin",
      geo: { "@type": "GeoCoordinates", latitude: 30.3192, longitude: -97.7411 },
      openingHoursSpecification: [
        {
          "@type": "OpeningHoursSpecification",
          dayOfWeek: ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
          opens: "09:00",
          closes: "17:00",
        },
      ],
      image: "https://maplegrove.example.com/img/austin-front.webp",
      priceRange: "$4,200–$6,800 per month",
      description: "Assisted living and memory care in the Brentwood neighbourhood of Austin.",
    });
    expect(res.jsonLdValidation).toMatchObject({
      index: 0,
      schemaType: "LocalBusiness",
      id: mapleGrove.id,
      missingRequired: [],
      missingRecommended: [],
      warnings: [],
      richResultEligible: true,
    });
  });

  it("questions the canonical phone when most listings agree on another number", async () => {
    const res = await run({
      business: { ...mapleGrove, phone: "(512) 555-0100" },
      citations: mapleGroveCitations,
    });
    const disputed = issue(res, "nap.canonical-disputed");
    expect(disputed).toMatchObject({
      severity: FindingSeverity.WARNING,
      field: NapField.PHONE,
      sourceNames: ["Community website", "A Place for Mom", "Caring.com"],
    });
    expect(disputed.message).toContain('3 of 4 listings agree on the phone "+15125550187"');
  });

  it("applies the request's match threshold to names", async () => {
    const citations = [{ sourceName: "Yelp", name: "Maple Grove Senior Living Austin" }];
    const lenient = await run({ citations });
    expect(fieldOf(citation(lenient, "Yelp"), NapField.NAME).consistent).toBe(true);
    const strict = await run({ citations, matchThreshold: 0.99 });
    const name = fieldOf(citation(strict, "Yelp"), NapField.NAME);
    expect(name.similarity).toBeLessThan(0.99);
    expect(name.consistent).toBe(false);
    expect(issue(strict, "nap.name-mismatch").sourceNames).toEqual(["Yelp"]);
  });

  it("answers 100 with no citations", async () => {
    const res = await run({ citations: [] });
    expect(res.citations).toEqual([]);
    expect(res.overallConsistencyScore).toBe(100);
  });
});

describe("analyzeLocalSeo: thin profiles", () => {
  it("lists the missing profile fields and scores without the phone the business does not have", async () => {
    const res = await run({
      business: {
        name: "Willow Creek Assisted Living",
        address: { streetLines: ["915 Elm Street"], locality: "Dayton" },
      },
      citations: [
        { sourceName: "Yelp", name: "Willow Creek Assisted Living", addressText: "915 Elm St, Dayton, OH 45402" },
      ],
    });
    expect(res.missingProfileFields).toEqual([
      "address.region",
      "address.postal_code",
      "phone",
      "website",
      "categories",
      "opening_hours",
      "geo",
      "description",
      "images",
      "price_range",
    ]);
    expect(res.profileCompleteness).toBe(10); // only the name of 10 profile fields
    expect(issue(res, "profile.address-incomplete").severity).toBe(FindingSeverity.CRITICAL);
    expect(issue(res, "profile.hours-missing").severity).toBe(FindingSeverity.WARNING);
    expect(res.issues[0]?.severity).toBe(FindingSeverity.CRITICAL);
    // Name and address only (30 + 40): both consistent.
    expect(citation(res, "Yelp").fields.map((f) => f.field)).toEqual([NapField.NAME, NapField.ADDRESS]);
    expect(citation(res, "Yelp").consistencyScore).toBe(100);
    expect(res.canonicalPhoneE164).toBe("");
    expect(res.jsonLdValidation?.missingRecommended).toEqual([
      "address.addressRegion",
      "address.postalCode",
      "address.addressCountry",
      "geo",
      "openingHoursSpecification",
      "priceRange",
      "telephone",
      "url",
      "image",
    ]);
    expect(res.jsonLdValidation?.richResultEligible).toBe(true);
  });

  it("keeps an unparseable canonical phone as written and says so", async () => {
    const res = await run({ business: { ...mapleGrove, phone: "555-0187" }, citations: [] });
    expect(res.canonicalPhoneE164).toBe("");
    expect(issue(res, "profile.phone-invalid").field).toBe(NapField.PHONE);
    expect(JSON.parse(res.localBusinessJsonLd).telephone).toBe("555-0187");
    expect(res.jsonLdValidation?.warnings.join(" ")).toContain("E.164");
  });

  it("flags listings without a phone and with an invalid one", async () => {
    const res = await run({
      citations: [
        { sourceName: "Caring.com", name: "Maple Grove Senior Living", phone: "555-0187" },
        { sourceName: "SeniorAdvisor", name: "Maple Grove Senior Living" },
      ],
    });
    expect(issue(res, "nap.phone-invalid").sourceNames).toEqual(["Caring.com"]);
    expect(issue(res, "nap.phone-missing").sourceNames).toEqual(["SeniorAdvisor"]);
    expect(issue(res, "nap.address-missing").sourceNames).toEqual(["Caring.com", "SeniorAdvisor"]);
    expect(citation(res, "SeniorAdvisor").consistent).toBe(true); // what it lists is right
    expect(citation(res, "SeniorAdvisor").consistencyScore).toBe(30); // but it lists only the name
  });
});

describe("analyzeLocalSeo: invalid input", () => {
  it("names the field", async () => {
    const cases: [AnalyzeLocalSeoRequest, string][] = [
      [create(AnalyzeLocalSeoRequestSchema, {}), "business"],
      [request({ business: { ...mapleGrove, name: " -- " } }), "business.name"],
      [request({ business: { ...mapleGrove, address: undefined } }), "business.address"],
      [
        request({ business: { ...mapleGrove, address: { streetLines: ["  "], locality: "Austin" } } }),
        "business.address.street_lines",
      ],
      [request({ matchThreshold: 1.5 }), "match_threshold"],
      [request({ matchThreshold: Number.NaN }), "match_threshold"],
      [request({ defaultRegion: "ZZ" }), "default_region"],
      [
        request({ business: { ...mapleGrove, address: { streetLines: ["1 Main St"], countryCode: "XX" } } }),
        "business.address.country_code",
      ],
      [request({ citations: [{ sourceName: "  ", name: "Maple Grove" }] }), "citations[0].source_name"],
      [request({ citations: [{ sourceName: "Yelp", name: "Maple Grove" }, { sourceName: "Bing" }] }), "citations[1]"],
    ];
    for (const [req, fieldPath] of cases) {
      const err = await invalid(req);
      expect(err.field).toBe(fieldPath);
    }
  });
});
