/** The Writing agent: long-form content, internal linking, press releases. */
import { WritingService } from "../../gen/mesh/writing/v1/writing_service_pb.ts";
import { defineAgent } from "../../lib/server/index.ts";

/** Writing agent module; its skills come in later issues and answer UNIMPLEMENTED until then. */
export const writingAgent = defineAgent({
  id: "writing",
  service: WritingService,
  implemented: [],
  create: () => ({}),
});
