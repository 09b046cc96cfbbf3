/** Requests shared by integration tests and benchmarks. */
import { create } from "@bufbuild/protobuf";
import { type TrackRankingsRequest, TrackRankingsRequestSchema } from "../../gen/mesh/seo/v1/seo_service_pb.ts";

const at = (iso: string) => ({ seconds: BigInt(Date.parse(iso) / 1000), nanos: 0 });

/**
 * A rank-tracking request over `extraKeywords + 1` keywords: our domain moves from 14 to 9 on
 * "assisted living austin" while a competitor holds 3. The SEO agent calls Research for it.
 */
export function rankTrackingRequest(extraKeywords = 0): TrackRankingsRequest {
  const keywords = [
    { keyword: "assisted living austin", monthlySearchVolume: 2400n, difficulty: 38, cpcMicros: 4_200_000n },
  ];
  const observations = [
    { keyword: "assisted living austin", domain: "example.com", position: 14, observedAt: at("2025-05-01T06:00:00Z") },
    { keyword: "assisted living austin", domain: "example.com", position: 9, observedAt: at("2025-06-01T06:00:00Z") },
    {
      keyword: "assisted living austin",
      domain: "competitor.example",
      position: 3,
      observedAt: at("2025-06-01T06:00:00Z"),
    },
  ];
  for (let i = 0; i < extraKeywords; i++) {
    const keyword = `senior living option ${i} city ${i % 97}`;
    keywords.push({
      keyword,
      monthlySearchVolume: BigInt(10 + (i % 500)),
      difficulty: i % 100,
      cpcMicros: BigInt((i % 40) * 100_000),
    });
    observations.push({
      keyword,
      domain: "example.com",
      position: 1 + (i % 60),
      observedAt: at("2025-06-01T06:00:00Z"),
    });
  }
  return create(TrackRankingsRequestSchema, {
    ourDomain: "example.com",
    competitorDomains: ["competitor.example"],
    observations,
    keywords,
    previousDate: at("2025-05-01T00:00:00Z"),
    currentDate: at("2025-06-01T00:00:00Z"),
  });
}
