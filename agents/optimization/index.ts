/** The Optimization agent: meta tags, images, content performance. */
import { OptimizationService } from "../../gen/mesh/optimization/v1/optimization_service_pb.ts";
import { defineAgent } from "../../lib/server/index.ts";
import { analyzeContentPerformance } from "./skills/analyze-content-performance.ts";
import { generateMetaTags } from "./skills/generate-meta-tags.ts";
import { optimizeImage } from "./skills/optimize-image.ts";

/** Optimization agent module: all three skills; none needs tables (their results travel in the responses). */
export const optimizationAgent = defineAgent({
  id: "optimization",
  service: OptimizationService,
  implemented: ["GenerateMetaTags", "OptimizeImage", "AnalyzeContentPerformance"],
  create: (deps) => ({
    generateMetaTags: (req) => generateMetaTags(req),
    // The variants travel in the response: keep them within the server's message limit.
    optimizeImage: (req, ctx) =>
      optimizeImage({ maxResponseBytes: Math.max(1, deps.config.maxMessageBytes - 256 * 1024) }, req, ctx),
    analyzeContentPerformance: (req) => analyzeContentPerformance(req),
  }),
});
