/** The request the transport benchmark sends: a two-keyword KeywordResearch. */
import { create } from "@bufbuild/protobuf";
import {
  type KeywordResearchRequest,
  KeywordResearchRequestSchema,
} from "../gen/mesh/research/v1/research_service_pb.ts";

/** The benchmark's KeywordResearch request. */
export function benchRequest(): KeywordResearchRequest {
  return create(KeywordResearchRequestSchema, {
    keywords: [
      {
        keyword: "assisted living austin",
        monthlySearchVolume: 2400n,
        difficulty: 38,
        cpcMicros: 4_200_000n,
        currentPosition: 14,
      },
      { keyword: "memory care austin tx", monthlySearchVolume: 880n, difficulty: 25, cpcMicros: 5_100_000n },
    ],
  });
}
