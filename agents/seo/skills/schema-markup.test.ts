import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  ArticleType,
  DayOfWeek,
  type GenerateSchemaMarkupRequest,
  GenerateSchemaMarkupRequestSchema,
  LocalBusinessType,
} from "../../../gen/mesh/seo/v1/seo_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { validateJsonLd } from "../../../lib/schema-org/index.ts";
import { generateSchemaMarkup } from "./schema-markup.ts";

type RequestInit = MessageInitShape<typeof GenerateSchemaMarkupRequestSchema>;
type EntityInit = NonNullable<RequestInit["entities"]>[number];

// The skill is a pure function of the request: it uses none of the agent's dependencies.
const site = "https://seniorliving.example.com";
const cityUrl = `${site}/assisted-living/austin-tx`;

function request(init: RequestInit): GenerateSchemaMarkupRequest {
  return create(GenerateSchemaMarkupRequestSchema, init);
}

/** A realistic (sample) senior-living community. */
function community(slug: string, name: string, over: Record<string, unknown> = {}): EntityInit {
  return {
    entity: {
      case: "localBusiness",
      value: {
        id: `${site}/communities/${slug}#business`,
        name,
        description: `${name} offers assisted living and memory care in south Austin (sample data).`,
        address: {
          streetLines: ["1200 Barton Springs Rd"],
          locality: "Austin",
          region: "TX",
          postalCode: "78704",
          countryCode: "US",
        },
        geo: { latitude: 30.26421, longitude: -97.76173 },
        telephone: "+1-512-555-0142",
        url: `${site}/communities/${slug}`,
        images: [`${site}/images/${slug}-16x9.webp`],
        priceRange: "$4,200–$6,800 per month",
        openingHours: [
          {
            daysOfWeek: [
              DayOfWeek.MONDAY,
              DayOfWeek.TUESDAY,
              DayOfWeek.WEDNESDAY,
              DayOfWeek.THURSDAY,
              DayOfWeek.FRIDAY,
            ],
            opens: "09:00",
            closes: "17:00",
          },
          { daysOfWeek: [DayOfWeek.SATURDAY], opens: "10:00", closes: "14:00" },
        ],
        amenityFeatures: ["Assisted living", "Memory care"],
        sameAs: [`https://maps.example.net/place/${slug}`],
        ...over,
      },
    },
  };
}

const breadcrumbs: EntityInit = {
  entity: {
    case: "breadcrumbList",
    value: {
      id: `${cityUrl}#breadcrumbs`,
      items: [
        { name: "Home", url: `${site}/` },
        { name: "Texas", url: `${site}/assisted-living/tx` },
        { name: "Austin" },
      ],
    },
  },
};

function cityPage(items: { position: number; url?: string; itemId?: string; name?: string }[]): EntityInit {
  return {
    entity: {
      case: "collectionPage",
      value: {
        id: `${cityUrl}#page`,
        url: cityUrl,
        name: "Assisted Living in Austin, TX",
        description: "Compare 2 senior living communities in Austin, Texas (sample data).",
        breadcrumbId: `${cityUrl}#breadcrumbs`,
        items,
      },
    },
  };
}

const cityItems = [
  { position: 1, url: `${site}/communities/sunrise-austin`, itemId: `${site}/communities/sunrise-austin#business` },
  { position: 2, url: `${site}/communities/oak-terrace`, itemId: `${site}/communities/oak-terrace#business` },
];

describe("generateSchemaMarkup", () => {
  it("renders one community as a LocalBusiness with @context, valid and eligible", async () => {
    const res = await generateSchemaMarkup(request({ entities: [community("sunrise-austin", "Sunrise Gardens")] }));
    const doc = JSON.parse(res.jsonLd);
    expect(doc).toMatchObject({
      "@context": "https://schema.org",
      "@type": "LocalBusiness",
      "@id": `${site}/communities/sunrise-austin#business`,
      address: { "@type": "PostalAddress", addressLocality: "Austin", addressRegion: "TX", postalCode: "78704" },
      geo: { "@type": "GeoCoordinates", latitude: 30.26421, longitude: -97.76173 },
      telephone: "+1-512-555-0142",
      openingHoursSpecification: [
        { dayOfWeek: ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"], opens: "09:00", closes: "17:00" },
        { dayOfWeek: "Saturday", opens: "10:00", closes: "14:00" },
      ],
      amenityFeature: [
        { "@type": "LocationFeatureSpecification", name: "Assisted living", value: true },
        { "@type": "LocationFeatureSpecification", name: "Memory care", value: true },
      ],
    });
    expect(res.jsonLd).not.toContain("\n");
    expect(res.valid).toBe(true);
    expect(res.missingRequiredCount).toBe(0);
    expect(res.missingRecommendedCount).toBe(0);
    expect(res.validations).toHaveLength(1);
    expect(res.validations[0]).toMatchObject({
      index: 0,
      schemaType: "LocalBusiness",
      id: `${site}/communities/sunrise-austin#business`,
      missingRequired: [],
      missingRecommended: [],
      warnings: [],
      richResultEligible: true,
    });
  });

  it("emits MedicalBusiness for licensed skilled nursing", async () => {
    const res = await generateSchemaMarkup(
      request({
        entities: [
          community("oak-nursing", "Oak Skilled Nursing", { businessType: LocalBusinessType.MEDICAL_BUSINESS }),
        ],
      }),
    );
    expect(JSON.parse(res.jsonLd)["@type"]).toBe("MedicalBusiness");
    expect(res.validations[0]?.schemaType).toBe("MedicalBusiness");
    expect(res.valid).toBe(true);
  });

  it("renders a city page as one @graph: CollectionPage + ItemList → community @ids, BreadcrumbList, communities", async () => {
    const res = await generateSchemaMarkup(
      request({
        entities: [
          cityPage(cityItems),
          breadcrumbs,
          community("sunrise-austin", "Sunrise Gardens"),
          community("oak-terrace", "Oak Terrace"),
        ],
        asScriptTag: true,
        pretty: true,
      }),
    );
    expect(res.jsonLd.startsWith('<script type="application/ld+json">\n{\n  "@context"')).toBe(true);
    expect(res.jsonLd.endsWith("\n</script>")).toBe(true);
    const json = res.jsonLd.slice(res.jsonLd.indexOf("\n") + 1, res.jsonLd.lastIndexOf("\n"));
    const doc = JSON.parse(json);
    expect(doc["@context"]).toBe("https://schema.org");
    expect(doc["@graph"].map((n: { "@type": string }) => n["@type"])).toEqual([
      "CollectionPage",
      "BreadcrumbList",
      "LocalBusiness",
      "LocalBusiness",
    ]);
    expect(doc["@graph"][0]).toMatchObject({
      breadcrumb: { "@id": `${cityUrl}#breadcrumbs` },
      mainEntity: {
        "@type": "ItemList",
        numberOfItems: 2,
        itemListElement: [
          { "@type": "ListItem", position: 1, item: { "@id": `${site}/communities/sunrise-austin#business` } },
          { "@type": "ListItem", position: 2, item: { "@id": `${site}/communities/oak-terrace#business` } },
        ],
      },
    });
    expect(doc["@graph"][1].itemListElement).toEqual([
      { "@type": "ListItem", position: 1, name: "Home", item: `${site}/` },
      { "@type": "ListItem", position: 2, name: "Texas", item: `${site}/assisted-living/tx` },
      { "@type": "ListItem", position: 3, name: "Austin" },
    ]);
    expect(res.valid).toBe(true);
    expect(res.validations.map((v) => [v.index, v.schemaType, v.richResultEligible])).toEqual([
      [0, "CollectionPage", true],
      [1, "BreadcrumbList", true],
      [2, "LocalBusiness", true],
      [3, "LocalBusiness", true],
    ]);
    // The artefact re-validates on its own.
    expect(validateJsonLd(doc).valid).toBe(true);
  });

  it("reports missing required and recommended properties as JSONPaths into the output, without inventing values", async () => {
    const res = await generateSchemaMarkup(
      request({
        entities: [
          {
            entity: {
              case: "localBusiness",
              value: { id: `${site}/c/9#business`, name: "  ", telephone: "512 555 0100" },
            },
          },
          breadcrumbs,
        ],
      }),
    );
    expect(res.valid).toBe(false);
    const [lb, bc] = res.validations;
    expect(lb?.missingRequired).toEqual(["$['@graph'][0].name", "$['@graph'][0].address"]);
    expect(lb?.missingRecommended).toEqual([
      "$['@graph'][0].url",
      "$['@graph'][0].geo",
      "$['@graph'][0].image",
      "$['@graph'][0].priceRange",
      "$['@graph'][0].openingHoursSpecification",
    ]);
    expect(lb?.warnings).toEqual([expect.stringMatching(/^warning \$\['@graph'\]\[0\]\.telephone: .*country code/)]);
    expect(lb?.richResultEligible).toBe(false);
    expect(bc?.richResultEligible).toBe(true);
    expect(res.missingRequiredCount).toBe(2);
    expect(res.missingRecommendedCount).toBe(5);
    expect(JSON.parse(res.jsonLd)["@graph"][0]).toEqual({
      "@type": "LocalBusiness",
      "@id": `${site}/c/9#business`,
      telephone: "512 555 0100",
    });
  });

  it("flags a gap in ItemList positions and a duplicate @id across the graph", async () => {
    const res = await generateSchemaMarkup(
      request({
        entities: [
          cityPage([
            cityItems[0] as (typeof cityItems)[number],
            { ...(cityItems[1] as (typeof cityItems)[number]), position: 3 },
          ]),
          community("sunrise-austin", "Sunrise Gardens"),
          community("sunrise-austin", "Sunrise Gardens (copy)"),
        ],
      }),
    );
    expect(res.valid).toBe(false);
    expect(res.validations[0]?.warnings).toEqual([
      expect.stringMatching(
        /^error \$\['@graph'\]\[0\]\.mainEntity\.itemListElement\[1\]\.position: positions must run 1\.\.n/,
      ),
    ]);
    expect(res.validations[0]?.richResultEligible).toBe(false);
    expect(res.validations[1]?.richResultEligible).toBe(true);
    expect(res.validations[2]?.warnings).toEqual([
      expect.stringMatching(/^error \$\['@graph'\]\[2\]\['@id'\]: .*already defined/),
    ]);
    expect(res.validations[2]?.richResultEligible).toBe(false);
  });

  it("renders an article with a long headline as a warning only", async () => {
    const res = await generateSchemaMarkup(
      request({
        entities: [
          {
            entity: {
              case: "article",
              value: {
                articleType: ArticleType.NEWS_ARTICLE,
                url: `${site}/news/austin-openings`,
                headline: `Three new assisted living communities open in Austin ${"and more ".repeat(10)}`,
                images: [`${site}/news/austin.webp`],
                datePublished: timestampFromDate(new Date("2025-05-01T12:00:00Z")),
                dateModified: timestampFromDate(new Date("2025-05-02T12:00:00Z")),
                authors: [{ name: "Dana Whitfield" }],
                publisher: { name: "Senior Living Directory", logoUrl: `${site}/logo.png` },
              },
            },
          },
        ],
      }),
    );
    const doc = JSON.parse(res.jsonLd);
    expect(doc).toMatchObject({
      "@type": "NewsArticle",
      mainEntityOfPage: `${site}/news/austin-openings`,
      datePublished: "2025-05-01T12:00:00.000Z",
      author: { "@type": "Person", name: "Dana Whitfield" },
    });
    expect(res.valid).toBe(true);
    expect(res.validations[0]?.warnings).toEqual([
      expect.stringMatching(/^warning \$\.headline: .*truncates past 110/),
    ]);
  });

  it("escapes markup in values so the script tag cannot be closed early", async () => {
    const res = await generateSchemaMarkup(
      request({ entities: [community("x", "Evil </script><script>alert(1)</script>")], asScriptTag: true }),
    );
    expect(res.jsonLd.match(/<\/script>/g)).toHaveLength(1);
  });

  describe("invalid input", () => {
    const cases: [string, RequestInit, string][] = [
      ["no entities", { entities: [] }, "entities"],
      ["an entity without a type", { entities: [breadcrumbs, {}] }, "entities[1].entity"],
      [
        "an unspecified opening day",
        {
          entities: [
            community("a", "A", {
              openingHours: [{ daysOfWeek: [DayOfWeek.UNSPECIFIED], opens: "09:00", closes: "17:00" }],
            }),
          ],
        },
        "entities[0].local_business.opening_hours[0].days_of_week[0]",
      ],
      [
        "an unknown business type",
        { entities: [community("a", "A", { businessType: 9 as LocalBusinessType })] },
        "entities[0].local_business.business_type",
      ],
      [
        "a collection item with neither url nor item_id",
        { entities: [cityPage([{ position: 1, name: "x" }])] },
        "entities[0].collection_page.items[0]",
      ],
      [
        "a collection item at position 0",
        { entities: [cityPage([{ position: 0, url: `${site}/c/1` }])] },
        "entities[0].collection_page.items[0].position",
      ],
      [
        "an empty breadcrumb list",
        { entities: [{ entity: { case: "breadcrumbList", value: { items: [] } } }] },
        "entities[0].breadcrumb_list.items",
      ],
      [
        "a blank breadcrumb name",
        { entities: [{ entity: { case: "breadcrumbList", value: { items: [{ name: " " }] } } }] },
        "entities[0].breadcrumb_list.items[0].name",
      ],
      [
        "a blank author name",
        { entities: [{ entity: { case: "article", value: { headline: "h", authors: [{ name: "" }] } } }] },
        "entities[0].article.authors[0].name",
      ],
    ];
    for (const [what, init, field] of cases) {
      it(`rejects ${what} naming ${field}`, async () => {
        const err = await generateSchemaMarkup(request(init)).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(InvalidInputError);
        expect((err as InvalidInputError).field).toBe(field);
      });
    }
  });
});
