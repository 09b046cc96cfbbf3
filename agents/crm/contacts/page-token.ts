/** Keyset page tokens of the CRM's read API: the platform's (lib/db), named where the CRM's lists import them. */
export {
  decodePageToken,
  defaultPageSize,
  encodePageToken,
  type Keyset,
  maxPageSize,
  pageSizeOf,
} from "../../../lib/db/index.ts";
