import { describe, expect, it } from "vitest";
import {
  buildArticle,
  buildBreadcrumbList,
  buildCollectionPage,
  buildGraph,
  buildLocalBusiness,
  type LocalBusinessInput,
  serializeJsonLd,
  toJsonLdScriptTag,
  validateJsonLd,
  withContext,
} from "./index.ts";

const site = "https://seniorliving.example.com";

/** A realistic (sample) community in Austin, TX. */
const community: LocalBusinessInput = {
  id: `${site}/tx/austin/sunrise-gardens#business`,
  name: "Sunrise Gardens of Austin",
  description: "Assisted living and memory care near Zilker Park (sample data).",
  address: {
    streetLines: ["1200 Barton Springs Rd", ""],
    locality: "Austin",
    region: "TX",
    postalCode: "78704",
    countryCode: "US",
  },
  geo: { latitude: 30.26421, longitude: -97.76173 },
  telephone: "+1-512-555-0142",
  url: `${site}/tx/austin/sunrise-gardens`,
  images: [`${site}/img/sunrise-gardens-16x9.webp`, `${site}/img/sunrise-gardens-1x1.webp`],
  priceRange: "$4,200–$6,800 per month",
  openingHours: [{ days: ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"], opens: "09:00", closes: "17:00" }],
  amenityFeatures: ["Assisted living", "Memory care"],
};

describe("buildLocalBusiness", () => {
  it("maps a community to a LocalBusiness that validates without errors or warnings", () => {
    const node = buildLocalBusiness(community);
    expect(node).toMatchObject({
      "@type": "LocalBusiness",
      "@id": community.id,
      name: "Sunrise Gardens of Austin",
      address: {
        "@type": "PostalAddress",
        streetAddress: "1200 Barton Springs Rd",
        addressLocality: "Austin",
        addressRegion: "TX",
        postalCode: "78704",
        addressCountry: "US",
      },
      geo: { "@type": "GeoCoordinates", latitude: 30.26421, longitude: -97.76173 },
      openingHoursSpecification: [
        {
          "@type": "OpeningHoursSpecification",
          dayOfWeek: ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
          opens: "09:00",
          closes: "17:00",
        },
      ],
      amenityFeature: [
        { "@type": "LocationFeatureSpecification", name: "Assisted living", value: true },
        { "@type": "LocationFeatureSpecification", name: "Memory care", value: true },
      ],
    });
    const check = validateJsonLd(withContext(node));
    expect(check.errors).toEqual([]);
    expect(check.warnings).toEqual([]);
    expect(check.valid).toBe(true);
  });

  it("emits MedicalBusiness only when asked (licensed skilled nursing)", () => {
    expect(buildLocalBusiness({ ...community, type: "MedicalBusiness" })["@type"]).toBe("MedicalBusiness");
    expect(validateJsonLd(withContext(buildLocalBusiness({ ...community, type: "MedicalBusiness" }))).valid).toBe(true);
  });

  it("leaves out empty values instead of inventing them, so the validator reports them", () => {
    const node = buildLocalBusiness({
      name: "",
      address: { streetLines: [], locality: "" },
      telephone: "",
      images: [],
    });
    expect(node).toEqual({ "@type": "LocalBusiness" });
    const check = validateJsonLd(withContext(node));
    expect(check.valid).toBe(false);
    expect(check.errors.map((e) => e.path)).toEqual(["$.name", "$.address"]);
  });
});

describe("city page graph", () => {
  const page = `${site}/tx/austin`;
  const second = { ...community, id: `${site}/tx/austin/oak-terrace#business`, name: "Oak Terrace" };
  const doc = buildGraph([
    buildCollectionPage({
      id: `${page}#page`,
      url: page,
      name: "Assisted Living in Austin, TX",
      description: "2 senior living communities in Austin, Texas (sample data).",
      breadcrumbId: `${page}#breadcrumbs`,
      // Given out of order: emitted sorted by position.
      items: [
        { position: 2, url: `${page}/oak-terrace`, itemId: `${second.id}`, name: "Oak Terrace" },
        { position: 1, url: `${page}/sunrise-gardens`, itemId: `${community.id}`, name: "Sunrise Gardens of Austin" },
      ],
    }),
    buildBreadcrumbList({
      id: `${page}#breadcrumbs`,
      items: [{ name: "Home", url: `${site}/` }, { name: "Texas", url: `${site}/tx` }, { name: "Austin" }],
    }),
    buildLocalBusiness(community),
    buildLocalBusiness(second),
  ]);

  it("builds CollectionPage + ItemList + BreadcrumbList + LocalBusiness nodes that pass the validator", () => {
    const check = validateJsonLd(doc);
    expect(check.errors).toEqual([]);
    expect(check.warnings).toEqual([]);
    expect(check.entities.map((e) => e.types[0])).toEqual([
      "CollectionPage",
      "BreadcrumbList",
      "LocalBusiness",
      "LocalBusiness",
    ]);
    expect(doc["@context"]).toBe("https://schema.org");
    const [collection] = doc["@graph"] as unknown as {
      mainEntity: { numberOfItems: number; itemListElement: unknown[] };
    }[];
    expect(collection?.mainEntity.numberOfItems).toBe(2);
    expect(collection?.mainEntity.itemListElement[0]).toEqual({
      "@type": "ListItem",
      position: 1,
      url: `${page}/sunrise-gardens`,
      name: "Sunrise Gardens of Austin",
      item: { "@id": community.id },
    });
  });

  it("numbers breadcrumb positions 1..n and omits the last step's item", () => {
    const [, breadcrumbs] = doc["@graph"] as unknown as { itemListElement: unknown[] }[];
    expect(breadcrumbs?.itemListElement).toEqual([
      { "@type": "ListItem", position: 1, name: "Home", item: `${site}/` },
      { "@type": "ListItem", position: 2, name: "Texas", item: `${site}/tx` },
      { "@type": "ListItem", position: 3, name: "Austin" },
    ]);
  });
});

describe("buildArticle", () => {
  it("builds an Article with ISO 8601 dates, authors and publisher that passes the validator", () => {
    const node = buildArticle({
      id: `${site}/guides/paying-for-assisted-living#article`,
      type: "BlogPosting",
      url: `${site}/guides/paying-for-assisted-living`,
      headline: "How families pay for assisted living",
      images: [`${site}/img/guide.webp`],
      datePublished: new Date("2025-05-01T08:00:00Z"),
      dateModified: new Date("2025-06-01T08:00:00Z"),
      authors: [
        { name: "Dana Whitfield", url: `${site}/authors/dana` },
        { name: "Senior Living Desk", kind: "Organization" },
      ],
      publisher: { name: "Senior Living Directory", url: site, logoUrl: `${site}/logo.png` },
    });
    expect(node).toMatchObject({
      "@type": "BlogPosting",
      datePublished: "2025-05-01T08:00:00.000Z",
      author: [{ "@type": "Person", name: "Dana Whitfield" }, { "@type": "Organization" }],
      publisher: { "@type": "Organization", logo: { "@type": "ImageObject", url: `${site}/logo.png` } },
    });
    const check = validateJsonLd(withContext(node));
    expect(check.errors).toEqual([]);
    expect(check.warnings).toEqual([]);
  });
});

describe("serialisation", () => {
  it("escapes <, > and & so a value cannot close the script element, and parses back to the same value", () => {
    const doc = withContext(buildLocalBusiness({ ...community, name: "A & B </script><script>alert(1)</script>" }));
    const json = serializeJsonLd(doc);
    expect(json).not.toMatch(/[<>&]/);
    expect(JSON.parse(json)).toEqual(doc);
    const tag = toJsonLdScriptTag(doc);
    expect(tag.startsWith('<script type="application/ld+json">{')).toBe(true);
    expect(tag.indexOf("</script>")).toBe(tag.length - "</script>".length);
  });

  it("pretty-prints on request", () => {
    expect(serializeJsonLd({ a: 1 }, { pretty: true })).toBe('{\n  "a": 1\n}');
    expect(serializeJsonLd({ a: 1 })).toBe('{"a":1}');
  });
});
