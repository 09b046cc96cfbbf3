/** The Reporting agent: predictive scoring, reports, alerts, ROI. */
import { ReportingService } from "../../gen/mesh/reporting/v1/reporting_service_pb.ts";
import { defineAgent } from "../../lib/server/index.ts";

/** Reporting agent module; its skills come in later issues and answer UNIMPLEMENTED until then. */
export const reportingAgent = defineAgent({
  id: "reporting",
  service: ReportingService,
  implemented: [],
  create: () => ({}),
});
