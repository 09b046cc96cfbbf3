/** The Social agent: per-platform adaptation and the content calendar. */
import { SocialService } from "../../gen/mesh/social/v1/social_service_pb.ts";
import { defineAgent } from "../../lib/server/index.ts";

/** Social agent module; its skills come in later issues and answer UNIMPLEMENTED until then. */
export const socialAgent = defineAgent({
  id: "social",
  service: SocialService,
  implemented: [],
  create: () => ({}),
});
