/**
 * RecordFollowUpEngagement: replies stop enrolments (STOP_CONDITION_REPLIED), clicks stop those
 * that list STOP_CONDITION_CLICKED, and the first open or click of a message is a success of its
 * send-time arm. The work is in sequences/stops.ts, beside the other stop conditions.
 */
export { recordFollowUpEngagement } from "../sequences/stops.ts";
