import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { HealthCheckRequestSchema } from "../../gen/grpc/health/v1/health_pb.ts";
import { GetSkillRequestSchema } from "../../gen/mesh/registry/v1/registry_service_pb.ts";
import { KeywordResearchRequestSchema } from "../../gen/mesh/research/v1/research_service_pb.ts";
import { AdaptSocialContentRequestSchema } from "../../gen/mesh/social/v1/social_service_pb.ts";
import { wireCheckedBody } from "./bad-input.ts";
import { checkWireTypes } from "./wire-check.ts";

const bytes = (...b: number[]) => Uint8Array.from(b);

describe("checkWireTypes", () => {
  it("accepts what protobuf-es encodes, unknown fields and packed repeated scalars", () => {
    const req = create(KeywordResearchRequestSchema, {
      keywords: [{ keyword: "memory care austin", monthlySearchVolume: 880n, difficulty: 31 }],
    });
    expect(checkWireTypes(KeywordResearchRequestSchema, toBinary(KeywordResearchRequestSchema, req))).toBeUndefined();
    // Field 99 (unknown, varint 1), then a packed list of two enum values in field 2.
    expect(
      checkWireTypes(AdaptSocialContentRequestSchema, bytes(0x98, 0x06, 0x01, 0x12, 0x02, 0x01, 0x02)),
    ).toBeUndefined();
    // The same list unpacked.
    expect(checkWireTypes(AdaptSocialContentRequestSchema, bytes(0x10, 0x01, 0x10, 0x02))).toBeUndefined();
  });

  it("names a declared field carried with a wire type its type cannot have", () => {
    // The fuzz suite's findings: a varint and a fixed64 where strings are declared.
    expect(checkWireTypes(GetSkillRequestSchema, bytes(0x08, 0x04, 0x61, 0x62, 0x63, 0x64))).toBe(
      "skill (wire type Varint)",
    );
    expect(checkWireTypes(HealthCheckRequestSchema, bytes(0x09, 1, 2, 3, 4, 5, 6, 7, 8))).toBe(
      "service (wire type Bit64)",
    );
    // Nested: keywords[0].keyword as a varint.
    expect(checkWireTypes(KeywordResearchRequestSchema, bytes(0x0a, 0x02, 0x08, 0x05))).toBe(
      "keywords.keyword (wire type Varint)",
    );
  });

  it("throws on truncated input", () => {
    expect(() => checkWireTypes(HealthCheckRequestSchema, bytes(0x0a, 0x05, 0x61))).toThrow();
    expect(() => checkWireTypes(KeywordResearchRequestSchema, bytes(0x0a, 0x05, 0x08))).toThrow(/past the end/);
  });
});

describe("wireCheckedBody", () => {
  const drain = async (body: AsyncIterable<Uint8Array>): Promise<number[]> => {
    const out: number[] = [];
    for await (const c of body) out.push(...c);
    return out;
  };
  const grpc = new Headers({ "content-type": "application/grpc+proto" });
  async function* chunks(...parts: number[][]): AsyncIterable<Uint8Array> {
    for (const p of parts) yield Uint8Array.from(p);
  }

  it("passes envelopes through whole, empty ones included, whatever the chunking", async () => {
    const empty = [0, 0, 0, 0, 0];
    const skill = [0, 0, 0, 0, 5, 0x0a, 0x03, 0x61, 0x62, 0x63];
    const body = wireCheckedBody(chunks(empty, skill.slice(0, 3), skill.slice(3)), grpc, GetSkillRequestSchema, 1024);
    expect(await drain(body)).toEqual([...empty, ...skill]);
  });

  it("refuses an envelope whose field has the wrong wire type, and lets one over the limit through", async () => {
    const bad = [0, 0, 0, 0, 6, 0x08, 0x04, 0x61, 0x62, 0x63, 0x64];
    await expect(drain(wireCheckedBody(chunks(bad), grpc, GetSkillRequestSchema, 1024))).rejects.toThrow(
      /field skill \(wire type Varint\)/,
    );
    const huge = [0, 0, 0x10, 0, 0, 1, 2, 3];
    expect(await drain(wireCheckedBody(chunks(huge), grpc, GetSkillRequestSchema, 1024))).toEqual(huge);
  });
});
