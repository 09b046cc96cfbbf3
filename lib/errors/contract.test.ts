import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.ts";
import { KeywordResearchRequestSchema } from "../../gen/mesh/research/v1/research_service_pb.ts";
import { findViolations, maxFullyValidatedElements, violationsError } from "./contract.ts";

const emptyKeywords = (n: number) =>
  create(KeywordResearchRequestSchema, { keywords: Array.from({ length: n }, () => ({ keyword: "" })) });

describe("findViolations", () => {
  it("finds nothing in a valid request", () => {
    expect(
      findViolations(
        KeywordResearchRequestSchema,
        create(KeywordResearchRequestSchema, { keywords: [{ keyword: "memory care" }] }),
      ),
    ).toBeUndefined();
  });

  it("reports every violation of a small request (the error lists the first 20)", () => {
    const found = findViolations(KeywordResearchRequestSchema, emptyKeywords(500));
    expect(found?.fields).toHaveLength(500);
    expect(found?.fields[0]).toBe("keywords[0].keyword");
    const err = violationsError(found as NonNullable<typeof found>);
    expect(err.rawMessage).toMatch(/^keywords\[0\]\.keyword: .* and 499 more violations$/);
    expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations).toHaveLength(20);
  });

  it("stops at the first violation of a request with more elements than it fully validates", () => {
    const found = findViolations(KeywordResearchRequestSchema, emptyKeywords(maxFullyValidatedElements + 1));
    expect(found?.fields).toEqual(["keywords[0].keyword"]);
    expect(violationsError(found as NonNullable<typeof found>).rawMessage).not.toMatch(/more violation/);
  });

  it("names the list limit first when a list is over it", () => {
    const found = findViolations(KeywordResearchRequestSchema, emptyKeywords(50_001));
    expect(found?.fields).toEqual(["keywords"]);
    expect(found?.messages[0]).toMatch(/no more than 50000 item/);
  });
});
