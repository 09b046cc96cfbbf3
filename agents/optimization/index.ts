/** The Optimization agent: meta tags, images, content performance. */
import { OptimizationService } from "../../gen/mesh/optimization/v1/optimization_service_pb.ts";
import { defineAgent } from "../../lib/server/index.ts";

/** Optimization agent module; its skills come in later issues and answer UNIMPLEMENTED until then. */
export const optimizationAgent = defineAgent({
  id: "optimization",
  service: OptimizationService,
  implemented: [],
  create: () => ({}),
});
