import { describe, expect, it } from "vitest";
import { checkIsoDate, checkTelephone, type JsonLdIssue, jsonPathChild, validateJsonLd } from "./index.ts";

const site = "https://example.com";

/** A hand-written valid community node (no builder involved). */
function business(): Record<string, unknown> {
  return {
    "@type": "LocalBusiness",
    "@id": `${site}/c/1#business`,
    name: "Maple Grove Senior Living",
    address: {
      "@type": "PostalAddress",
      streetAddress: "10 Elm St",
      addressLocality: "Boise",
      addressRegion: "ID",
      postalCode: "83702",
      addressCountry: "US",
    },
    geo: { "@type": "GeoCoordinates", latitude: 43.615, longitude: -116.2023 },
    telephone: "+1 (208) 555-0199",
    url: `${site}/c/1`,
    image: `${site}/c/1.webp`,
    priceRange: "$$",
    openingHoursSpecification: {
      "@type": "OpeningHoursSpecification",
      dayOfWeek: "Monday",
      opens: "08:00",
      closes: "18:00",
    },
    amenityFeature: [{ "@type": "LocationFeatureSpecification", name: "Independent living", value: true }],
  };
}

function collectionPage(): Record<string, unknown> {
  return {
    "@type": "CollectionPage",
    "@id": `${site}/id/boise#page`,
    url: `${site}/id/boise`,
    name: "Senior Living in Boise, ID",
    description: "Communities in Boise.",
    breadcrumb: { "@id": `${site}/id/boise#breadcrumbs` },
    mainEntity: {
      "@type": "ItemList",
      numberOfItems: 2,
      itemListElement: [
        { "@type": "ListItem", position: 1, url: `${site}/c/1`, item: { "@id": `${site}/c/1#business` } },
        { "@type": "ListItem", position: 2, url: `${site}/c/2` },
      ],
    },
  };
}

function breadcrumbs(): Record<string, unknown> {
  return {
    "@type": "BreadcrumbList",
    "@id": `${site}/id/boise#breadcrumbs`,
    itemListElement: [
      { "@type": "ListItem", position: 1, name: "Home", item: `${site}/` },
      { "@type": "ListItem", position: 2, name: "Idaho", item: `${site}/id` },
      { "@type": "ListItem", position: 3, name: "Boise" },
    ],
  };
}

function article(): Record<string, unknown> {
  return {
    "@type": "NewsArticle",
    headline: "New memory care wing opens",
    image: [`${site}/news/1.webp`],
    datePublished: "2025-03-01T09:00:00-07:00",
    dateModified: "2025-03-02",
    author: { "@type": "Person", name: "Lee Park" },
  };
}

function graph(...nodes: Record<string, unknown>[]): Record<string, unknown> {
  return { "@context": "https://schema.org", "@graph": nodes };
}

/** The single issue of `rule` in a validation, or a failure listing all issues. */
function only(doc: unknown, rule: string): JsonLdIssue {
  const check = validateJsonLd(doc);
  const all = [...check.errors, ...check.warnings];
  const hits = all.filter((x) => x.rule === rule);
  expect(hits, JSON.stringify(all, null, 2)).toHaveLength(1);
  return hits[0] as JsonLdIssue;
}

const g0 = "$['@graph'][0]";

describe("validateJsonLd on valid hand-written documents", () => {
  it("accepts a city page graph with breadcrumbs, a community and an article", () => {
    const check = validateJsonLd(graph(collectionPage(), breadcrumbs(), business(), article()));
    expect(check.errors).toEqual([]);
    expect(check.warnings).toEqual([]);
    expect(check.valid).toBe(true);
    expect(check.entities.map((e) => [e.path, e.types, e.id])).toEqual([
      [`${g0}`, ["CollectionPage"], `${site}/id/boise#page`],
      ["$['@graph'][1]", ["BreadcrumbList"], `${site}/id/boise#breadcrumbs`],
      ["$['@graph'][2]", ["LocalBusiness"], `${site}/c/1#business`],
      ["$['@graph'][3]", ["NewsArticle"], undefined],
    ]);
  });

  it("accepts a top-level array of nodes each with @context", () => {
    const check = validateJsonLd([
      { "@context": "https://schema.org", ...business() },
      { "@context": "https://schema.org/", ...breadcrumbs() },
    ]);
    expect(check.errors).toEqual([]);
  });
});

describe("validateJsonLd rules, each on a broken document", () => {
  it("context: missing, wrong and http", () => {
    expect(only(business(), "context")).toMatchObject({ path: "$['@context']", severity: "error" });
    expect(only({ "@context": "https://example.org", ...business() }, "context")).toMatchObject({
      path: "$['@context']",
      severity: "error",
      kind: "invalid",
    });
    expect(only({ "@context": "http://schema.org", ...business() }, "context").severity).toBe("warning");
  });

  it("document: not an object, and a non-object graph element", () => {
    expect(only("nope", "document")).toMatchObject({ path: "$", severity: "error" });
    expect(only(graph(business(), 42 as unknown as Record<string, unknown>), "document").path).toBe("$['@graph'][1]");
    expect(only({ "@context": "https://schema.org", "@graph": {} }, "graph").path).toBe("$['@graph']");
  });

  it("type: a top-level node needs @type", () => {
    const { "@type": _, ...untyped } = business();
    expect(only(graph(untyped), "type")).toMatchObject({ path: `${g0}['@type']`, severity: "error" });
  });

  it("id.url: @id must be an absolute URL", () => {
    expect(only(graph({ ...business(), "@id": "business-1" }), "id.url").path).toBe(`${g0}['@id']`);
  });

  it("id.unique: two definitions of one @id across the graph (references are fine)", () => {
    const issue = only(
      graph(business(), collectionPage(), { ...breadcrumbs(), "@id": `${site}/c/1#business` }),
      "id.unique",
    );
    expect(issue).toMatchObject({ path: "$['@graph'][2]['@id']", severity: "error", entity: 2 });
    expect(issue.message).toContain(g0);
  });

  it("url: url, item, image and sameAs must be absolute http(s) URLs", () => {
    expect(only(graph({ ...business(), url: "/c/1" }), "url").path).toBe(`${g0}.url`);
    expect(only(graph({ ...business(), image: [`${site}/a.webp`, "ftp://x/b.png"] }), "url").path).toBe(
      `${g0}.image[1]`,
    );
    const crumbs = breadcrumbs();
    (crumbs.itemListElement as Record<string, unknown>[])[1] = {
      "@type": "ListItem",
      position: 2,
      name: "Idaho",
      item: "idaho",
    };
    expect(only(graph(crumbs), "url").path).toBe(`${g0}.itemListElement[1].item`);
  });

  it("date: ISO 8601, and a date-time without zone is a warning", () => {
    expect(only(graph({ ...article(), datePublished: "03/01/2025" }), "date")).toMatchObject({
      path: `${g0}.datePublished`,
      severity: "error",
    });
    expect(only(graph({ ...article(), dateModified: "2025-02-30" }), "date").path).toBe(`${g0}.dateModified`);
    expect(only(graph({ ...article(), dateModified: "2025-03-02T10:00:00" }), "date").severity).toBe("warning");
  });

  it("telephone: E.164-ish, no country code is a warning", () => {
    expect(only(graph({ ...business(), telephone: "call us" }), "telephone")).toMatchObject({
      path: `${g0}.telephone`,
      severity: "error",
    });
    expect(only(graph({ ...business(), telephone: "+1 555" }), "telephone").severity).toBe("error");
    expect(only(graph({ ...business(), telephone: "(208) 555-0199" }), "telephone").severity).toBe("warning");
  });

  it("email: must look like an address", () => {
    expect(only(graph({ ...business(), email: "info at example" }), "email").path).toBe(`${g0}.email`);
  });

  it("local-business.name and .address are required; recommended ones are warnings", () => {
    const { name: _n, address: _a, telephone: _t, ...rest } = business();
    const check = validateJsonLd(graph(rest));
    expect(check.errors.map((e) => [e.rule, e.path, e.kind])).toEqual([
      ["local-business.name", `${g0}.name`, "missing-required"],
      ["local-business.address", `${g0}.address`, "missing-required"],
    ]);
    expect(check.warnings.map((e) => [e.rule, e.path, e.kind])).toEqual([
      ["local-business.telephone", `${g0}.telephone`, "missing-recommended"],
    ]);
    expect(check.entities[0]?.errors).toHaveLength(2);
  });

  it("local-business.price-range: 100 characters or more is a warning", () => {
    expect(only(graph({ ...business(), priceRange: "$".repeat(100) }), "local-business.price-range").severity).toBe(
      "warning",
    );
  });

  it("address.empty: a PostalAddress with no fields; address.*: missing fields are recommended", () => {
    expect(only(graph({ ...business(), address: { "@type": "PostalAddress" } }), "address.empty").path).toBe(
      `${g0}.address`,
    );
    expect(
      only(
        graph({
          ...business(),
          address: {
            "@type": "PostalAddress",
            addressLocality: "Boise",
            addressRegion: "ID",
            postalCode: "83702",
            addressCountry: "US",
          },
        }),
        "address.streetAddress",
      ),
    ).toMatchObject({ path: `${g0}.address.streetAddress`, kind: "missing-recommended" });
  });

  it("geo ranges, missing coordinates and null island", () => {
    expect(
      only(graph({ ...business(), geo: { "@type": "GeoCoordinates", latitude: 95, longitude: 1 } }), "geo.latitude"),
    ).toMatchObject({ path: `${g0}.geo.latitude`, severity: "error" });
    expect(
      only(
        graph({ ...business(), geo: { "@type": "GeoCoordinates", latitude: 1, longitude: "-190" } }),
        "geo.longitude",
      ).path,
    ).toBe(`${g0}.geo.longitude`);
    expect(only(graph({ ...business(), geo: { "@type": "GeoCoordinates", latitude: 1 } }), "geo.longitude").kind).toBe(
      "missing-required",
    );
    expect(
      only(graph({ ...business(), geo: { "@type": "GeoCoordinates", latitude: 0, longitude: 0 } }), "geo.null-island")
        .severity,
    ).toBe("warning");
  });

  it("opening-hours: schema.org days and HH:MM times", () => {
    const hours = (h: Record<string, unknown>) =>
      graph({ ...business(), openingHoursSpecification: [{ "@type": "OpeningHoursSpecification", ...h }] });
    expect(
      only(hours({ dayOfWeek: ["Monday", "Funday"], opens: "08:00", closes: "18:00" }), "opening-hours.day-of-week")
        .path,
    ).toBe(`${g0}.openingHoursSpecification[0].dayOfWeek[1]`);
    expect(
      only(hours({ dayOfWeek: "https://schema.org/Sunday", opens: "8am", closes: "18:00" }), "opening-hours.opens")
        .path,
    ).toBe(`${g0}.openingHoursSpecification[0].opens`);
    expect(only(hours({ dayOfWeek: "Sunday", opens: "08:00" }), "opening-hours.closes").kind).toBe("missing-required");
  });

  it("amenity.name: a LocationFeatureSpecification needs a name", () => {
    expect(
      only(
        graph({ ...business(), amenityFeature: [{ "@type": "LocationFeatureSpecification", value: true }] }),
        "amenity.name",
      ).path,
    ).toBe(`${g0}.amenityFeature[0].name`);
  });

  it("collection-page: name and url required, mainEntity should be an ItemList", () => {
    const { url: _u, ...noUrl } = collectionPage();
    expect(only(graph(noUrl), "collection-page.url")).toMatchObject({ path: `${g0}.url`, kind: "missing-required" });
    expect(
      only(
        graph({ ...collectionPage(), mainEntity: { "@type": "Place", name: "Boise" } }),
        "collection-page.main-entity",
      ).severity,
    ).toBe("warning");
  });

  it("item-list.position: positions must run 1..n contiguous in order", () => {
    const page = collectionPage();
    const list = page.mainEntity as { itemListElement: Record<string, unknown>[] };
    list.itemListElement = [
      { "@type": "ListItem", position: 1, url: `${site}/c/1` },
      { "@type": "ListItem", position: 3, url: `${site}/c/3` },
    ];
    expect(only(graph(page), "item-list.position")).toMatchObject({
      path: `${g0}.mainEntity.itemListElement[1].position`,
      severity: "error",
    });
  });

  it("item-list.target and .number-of-items: each ListItem needs url or item; numberOfItems must match", () => {
    const page = collectionPage();
    const list = page.mainEntity as { itemListElement: Record<string, unknown>[]; numberOfItems: number };
    list.itemListElement = [{ "@type": "ListItem", position: 1, name: "No link" }];
    expect(only(graph(page), "item-list.target").path).toBe(`${g0}.mainEntity.itemListElement[0].url`);
    expect(only(graph(page), "item-list.number-of-items").path).toBe(`${g0}.mainEntity.numberOfItems`);
  });

  it("item-list.list-item: elements must be ListItems", () => {
    const page = collectionPage();
    (page.mainEntity as { itemListElement: unknown[] }).itemListElement = [`${site}/c/1`, `${site}/c/2`];
    const check = validateJsonLd(graph(page));
    expect(check.errors.filter((e) => e.rule === "item-list.list-item").map((e) => e.path)).toEqual([
      `${g0}.mainEntity.itemListElement[0]`,
      `${g0}.mainEntity.itemListElement[1]`,
    ]);
  });

  it("breadcrumb: positions, names and items except on the last step", () => {
    const crumbs = breadcrumbs();
    const steps = crumbs.itemListElement as Record<string, unknown>[];
    steps[1] = { "@type": "ListItem", position: 2, name: "Idaho" };
    expect(only(graph(crumbs), "breadcrumb.item")).toMatchObject({
      path: `${g0}.itemListElement[1].item`,
      kind: "missing-required",
    });
    steps[1] = { "@type": "ListItem", position: 2, item: `${site}/id` };
    expect(only(graph(crumbs), "breadcrumb.name").path).toBe(`${g0}.itemListElement[1].name`);
    steps[1] = { "@type": "ListItem", item: `${site}/id`, name: "Idaho" };
    expect(only(graph(crumbs), "breadcrumb.position")).toMatchObject({
      path: `${g0}.itemListElement[1].position`,
      kind: "missing-required",
    });
    steps[1] = { "@type": "ListItem", position: 5, item: `${site}/id`, name: "Idaho" };
    expect(only(graph(crumbs), "breadcrumb.position").kind).toBe("invalid");
    expect(
      only(
        graph({ ...breadcrumbs(), itemListElement: [{ "@type": "ListItem", position: 1, name: "Home" }] }),
        "breadcrumb.elements",
      ).severity,
    ).toBe("warning");
  });

  it("article: long headline, missing author name and dates out of order are warnings", () => {
    expect(only(graph({ ...article(), headline: "x".repeat(111) }), "article.headline")).toMatchObject({
      path: `${g0}.headline`,
      severity: "warning",
    });
    expect(only(graph({ ...article(), author: [{ "@type": "Person" }] }), "article.author-name").path).toBe(
      `${g0}.author[0].name`,
    );
    expect(only(graph({ ...article(), dateModified: "2025-01-01" }), "article.dates").path).toBe(`${g0}.dateModified`);
    const { image: _i, ...noImage } = article();
    const check = validateJsonLd(graph(noImage));
    expect(check.valid).toBe(true);
    expect(check.warnings.map((w) => w.path)).toEqual([`${g0}.image`]);
  });
});

describe("helpers", () => {
  it("jsonPathChild uses dot notation for identifiers and brackets otherwise", () => {
    expect(jsonPathChild("$", "@graph")).toBe("$['@graph']");
    expect(jsonPathChild("$", "name")).toBe("$.name");
    expect(jsonPathChild("$.a", 3)).toBe("$.a[3]");
    expect(jsonPathChild("$", "it's")).toBe("$['it\\'s']");
  });

  it("checkIsoDate and checkTelephone", () => {
    expect(checkIsoDate("2024-02-29")).toBe("ok");
    expect(checkIsoDate("2023-02-29")).toBe("invalid");
    expect(checkIsoDate("2024-02-29T10:00Z")).toBe("ok");
    expect(checkIsoDate("2024-02-29T10:00:00.123+05:30")).toBe("ok");
    expect(checkIsoDate("2024-02-29T10:00")).toBe("no-zone");
    expect(checkTelephone("+1-512-555-0142")).toBe("ok");
    expect(checkTelephone("+44 20 7946 0958 ext. 12")).toBe("ok");
    expect(checkTelephone("512.555.0142")).toBe("no-country-code");
    expect(checkTelephone("+0 512 555 0142")).toBe("invalid");
    expect(checkTelephone("+1 512 555 0142 0000 0000")).toBe("invalid");
  });
});
