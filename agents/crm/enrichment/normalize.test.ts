import { describe, expect, it } from "vitest";
import { builtInGazetteer } from "./geography.ts";
import { emailDomain, mailDomainKind, normalizePhone, registrableDomain } from "./normalize.ts";

describe("registrable domains (Public Suffix List)", () => {
  it.each([
    ["a.b.example.co.uk", "example.co.uk"],
    ["www.example.com", "example.com"],
    ["https://shop.example.com.au/path?q=1", "example.com.au"],
    ["Mail.Example.CO.UK.", "example.co.uk"],
    ["customer.github.io", "customer.github.io"],
    ["co.uk", ""],
    ["localhost", ""],
    ["192.168.1.10", ""],
    ["not a domain", ""],
    ["", ""],
  ])("%s → %s", (input, want) => {
    expect(registrableDomain(input)).toBe(want);
  });

  it("takes an email's domain part", () => {
    expect(emailDomain("Ada@Mail.Acme.co.uk")).toBe("acme.co.uk");
    expect(emailDomain("no-at-sign")).toBe("");
  });
});

describe("free-mail detection", () => {
  it.each([
    ["gmail.com", true, false],
    ["yahoo.co.uk", true, false],
    ["outlook.com", true, false],
    ["mailinator.com", true, true],
    ["acme.co.uk", false, false],
    ["example.com", false, false],
  ])("%s → free %s, disposable %s", (domain, free, disposable) => {
    expect(mailDomainKind(domain)).toEqual({ freeMail: free, disposable });
  });
});

describe("phones (libphonenumber's example numbers)", () => {
  it.each([
    ["07400 123456", "GB", "+447400123456", "GB", "mobile"],
    ["0121 234 5678", "GB", "+441212345678", "GB", "fixed_line"],
    ["(201) 555-0123", "US", "+12015550123", "US", "fixed_line_or_mobile"],
    ["1-800-234-5678", "US", "+18002345678", "US", "toll_free"],
    ["+49 1512 3456789", "US", "+4915123456789", "DE", "mobile"],
    ["00 41 21 234 56 78", "GB", "+41212345678", "CH", "fixed_line"],
    ["056 1234 5678", "GB", "+445612345678", "GB", "voip"],
  ])("%s in %s → %s (%s, %s)", (raw, region, e164, country, lineType) => {
    expect(normalizePhone(raw, region)).toEqual({ e164, valid: true, region: country, lineType });
  });

  it("keeps the E.164 form of a possible but invalid number, without region or type", () => {
    expect(normalizePhone("+1 200 555 0123", "US")).toEqual({
      e164: "+12005550123",
      valid: false,
      region: "",
      lineType: "unknown",
    });
  });

  it("answers nothing for what is not a phone number", () => {
    for (const raw of ["", "hello", "12", "+99999999999999999999"]) {
      expect(normalizePhone(raw, "US").e164).toBe("");
    }
  });
});

describe("built-in gazetteer", () => {
  const g = builtInGazetteer();
  it("finds a ZIP code's city, state and time zone", () => {
    const p = g.byPostcode("78701", "US");
    expect(p).toMatchObject({ city: "Austin", region: "TX", country: "US" });
    expect(g.timeZoneAt(p?.latitude as number, p?.longitude as number)).toBe("America/Chicago");
    expect(g.byPostcode("10001-1234", "")).toMatchObject({ city: "New York", region: "NY" });
    expect(g.byPostcode("99999", "US")).toBeUndefined();
    expect(g.byPostcode("SW1A 1AA", "GB")).toBeUndefined();
  });

  it("finds a city with its state uniquely, and ranks a bare name by population", () => {
    const austin = g.byCity("austin", "tx", "US");
    expect(austin?.place).toMatchObject({ city: "Austin", region: "TX" });
    expect(austin?.share).toBe(1);
    const springfield = g.byCity("Springfield", "", "US");
    // Springfield, Missouri is the most populous of the US Springfields, but far from all of them.
    expect(springfield?.place.region).toBe("MO");
    expect(springfield?.share).toBeGreaterThan(0);
    expect(springfield?.share).toBeLessThan(0.5);
    expect(g.byCity("Nowhereville", "", "US")).toBeUndefined();
  });
});
