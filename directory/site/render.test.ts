import { load } from "cheerio";
import { describe, expect, it } from "vitest";
import { type CityPageInput, type PageCommunity, renderCityPage, renderThankYouPage } from "./render.ts";

const community = (i: number, careTypes: string[], min: number): PageCommunity => ({
  slug: `oak-grove-${i}-austin-tx`,
  name: `Oak Grove ${i} (sample)`,
  street: `${100 + i} Example Lane`,
  postalCode: "78701",
  phone: `+1512555010${i}`,
  lat: 30.27 + i / 1000,
  lon: -97.74,
  careTypes,
  prices: careTypes.map((t, k) => ({ careType: t, min: min + k * 1000, max: min + k * 1000 + 1500 })),
  capacity: 80 + i,
  yearOpened: 1990 + i,
  amenities: ["Garden", "Chapel"],
});

const austin = {
  slug: "austin-tx",
  name: "Austin",
  stateCode: "TX",
  stateName: "Texas",
  lat: 30.27,
  lon: -97.74,
  population: 790390,
};
const input = (over: Partial<CityPageInput> = {}): CityPageInput => ({
  origin: "https://seniorliving.example",
  city: austin,
  communities: [
    community(1, ["Assisted living", "Memory care"], 4200),
    community(2, ["Independent living"], 2800),
    community(3, ["Assisted living"], 5100),
  ],
  neighbours: [
    {
      city: {
        slug: "round-rock-tx",
        name: "Round Rock",
        stateCode: "TX",
        stateName: "Texas",
        lat: 30.5,
        lon: -97.68,
        population: 99887,
      },
      km: 26.4,
      communities: 4,
    },
  ],
  stateMedianPrice: 4000,
  jsonLd: [{ "@context": "https://schema.org", "@type": "CollectionPage", name: "Senior living in Austin, TX" }],
  credit: "City data: GeoNames (CC BY 4.0)",
  ...over,
});

describe("city page", () => {
  const html = renderCityPage(input());
  const $ = load(html);

  it("has one h1, a title, a description, a canonical URL and parseable JSON-LD", () => {
    expect($("h1")).toHaveLength(1);
    expect($("h1").text()).toBe("Senior living in Austin, TX");
    expect($("title").text()).toBe("Senior Living in Austin, TX: 3 Communities Compared");
    expect($('meta[name="description"]').attr("content")).toMatch(/3 senior living communities in Austin, TX/);
    expect($('link[rel="canonical"]').attr("href")).toBe("https://seniorliving.example/tx/austin-tx/");
    const ld = $('script[type="application/ld+json"]')
      .map((_, e) => JSON.parse($(e).text()))
      .get();
    expect(ld[0]["@type"]).toBe("CollectionPage");
  });

  it("lists every community with an anchor, and links to the state, the index and nearby cities", () => {
    for (const i of [1, 2, 3]) expect($(`#oak-grove-${i}-austin-tx h3`).text()).toBe(`Oak Grove ${i} (sample)`);
    expect($('a[href="/tx/"]').length).toBeGreaterThan(0);
    expect($('a[href="/"]').length).toBeGreaterThan(0);
    expect($('a[href="/tx/round-rock-tx/"]').text()).toBe("Round Rock, TX");
  });

  it("filters by care type and price without JavaScript", () => {
    expect($(".list .c.t-memory-care")).toHaveLength(1);
    expect($(".list .c.p1")).toHaveLength(1); // $2,800 starting price
    expect($("#care-t-memory-care").attr("type")).toBe("radio");
    expect(html).toContain("#care-t-memory-care:checked~.list .c:not(.t-memory-care){display:none}");
    expect(html).toContain("#price-p1:checked~.list .c:not(.p1){display:none}");
  });

  it("has an enquiry form that is a plain POST, and no external or blocking script", () => {
    expect($("form[data-enquiry]").attr("method")).toBe("post");
    expect($("form[data-enquiry]").attr("action")).toBe("/enquiry");
    expect($("form input[name=city]").val()).toBe("austin-tx");
    expect($("script[src]")).toHaveLength(0);
    expect($("head script:not([type])")).toHaveLength(0);
    expect($("link[rel=stylesheet]")).toHaveLength(0);
  });

  it("labels the data as sample data and credits GeoNames", () => {
    expect($("footer").text()).toMatch(/Sample data/);
    expect($("footer").text()).toMatch(/GeoNames/);
  });

  it("says different things for different cities, from their own numbers", () => {
    const other = renderCityPage(
      input({
        city: { ...austin, slug: "waco-tx", name: "Waco", population: 124805 },
        communities: [community(7, ["Skilled nursing"], 7800)],
        stateMedianPrice: 4000,
      }),
    );
    const intro = (h: string) => load(h)("main > p, main > section > p").text();
    expect(intro(other)).not.toBe(intro(html));
    expect(intro(other)).toMatch(/Skilled nursing is the most common kind of care \(100% of communities\)/);
    expect(intro(other)).toMatch(/95% above the Texas median of \$4,000/);
  });

  it("escapes text and keeps JSON-LD from closing its script element", () => {
    const evil = renderCityPage(
      input({ jsonLd: [{ name: "</script><script>alert(1)</script>" }], city: { ...austin, name: "A<b>&" } }),
    );
    expect(evil).not.toContain("</script><script>alert(1)");
    expect(load(evil)("h1").text()).toBe("Senior living in A<b>&, TX");
  });

  it("keeps the thank-you page out of the index", () => {
    expect(
      load(renderThankYouPage({ origin: "https://x.example", credit: "c" }))('meta[name="robots"]').attr("content"),
    ).toBe("noindex");
  });
});
