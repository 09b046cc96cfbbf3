/** The Email agent: newsletters and follow-up sequences. */
import { EmailService } from "../../gen/mesh/email/v1/email_service_pb.ts";
import { defineAgent } from "../../lib/server/agent.ts";

/** Email agent module; its skills come in later issues and answer UNIMPLEMENTED until then. */
export const emailAgent = defineAgent({
  id: "email",
  service: EmailService,
  implemented: [],
  create: () => ({}),
});
