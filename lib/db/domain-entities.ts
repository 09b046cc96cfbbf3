/** Entities of each domain, kept apart from the migrations so the migration generator can load them. */
import type { EntitySchema } from "@mikro-orm/postgresql";
import { crmEntities } from "../../agents/crm/entities.ts";
import { conversionEntities } from "../../agents/data/conversion-entities.ts";
import { dataEntities } from "../../agents/data/entities.ts";
import { emailEntities } from "../../agents/email/entities.ts";
import { seoEntities } from "../../agents/seo/entities.ts";
import { outreachEntities } from "../../agents/seo/outreach-entities.ts";
import { systemEntities } from "../../agents/system/entities.ts";
import { directoryEntities } from "../../directory/entities.ts";
import type { ServerName } from "../config/index.ts";
import { workflowEntities } from "../workflow/entities.ts";

/** Domain entities by owning server (framework tables are added to each). */
export const domainEntities: Record<ServerName, readonly EntitySchema[]> = {
  content: [],
  operations: [...crmEntities, ...emailEntities] as EntitySchema[],
  technical: [
    ...workflowEntities,
    ...dataEntities,
    ...systemEntities,
    ...directoryEntities,
    ...seoEntities,
    ...outreachEntities,
    ...conversionEntities,
  ] as EntitySchema[],
};
