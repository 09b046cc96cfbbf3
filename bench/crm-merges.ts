/**
 * Duplicate detection over stored contacts and reversible merges: stores a synthetic population
 * (people plus corrupted duplicates), runs DetectDuplicates over the store (keyset pages of 1,000),
 * applies every match cluster's merge (one transaction each) and undoes every merge. In process,
 * on an isolated database and NATS prefix.
 */
import { randomUUID } from "node:crypto";
import { create, toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { CrmContact, type StoredJson } from "../agents/crm/entities.ts";
import { syntheticPopulation } from "../agents/crm/linkage/index.ts";
import { contactMerger, storedContactsSource, unmergeContacts } from "../agents/crm/merges/store.ts";
import { detectDuplicates } from "../agents/crm/skills/detect-duplicates.ts";
import { PostalAddressSchema } from "../gen/mesh/common/v1/types_pb.ts";
import {
  AttributeSchema,
  DetectDuplicatesRequestSchema,
  UnmergeContactsRequestSchema,
} from "../gen/mesh/crm/v1/crm_service_pb.ts";
import { openDatabase } from "../lib/db/index.ts";
import { createLogger } from "../lib/log/index.ts";
import { domains } from "../servers/domains.ts";
import { isolatedBus, isolatedDatabase } from "../test/support/backbone.ts";

/** One run's figures. */
export interface CrmMergesResult {
  contacts: number;
  detectSeconds: number;
  clusters: number;
  mergedContacts: number;
  mergeSeconds: number;
  unmergeSeconds: number;
}

/** Runs the scenario on `contacts` stored contacts (10 % of them duplicates). */
export async function benchCrmMerges(opts: { contacts: number }): Promise<CrmMergesResult> {
  const log = createLogger("warn");
  const dbHandle = await isolatedDatabase();
  const busHandle = await isolatedBus("bench-merges");
  const db = await openDatabase({ url: dbHandle.url, domain: domains.operations, log });
  try {
    const duplicates = Math.round(opts.contacts * 0.1);
    const pop = syntheticPopulation({ seed: 7, people: opts.contacts - duplicates, duplicates, householdShare: 0.01 });
    const emails = new Set<string>();
    for (let i = 0; i < pop.contacts.length; i += 2_000) {
      const em = db.fork();
      for (const c of pop.contacts.slice(i, i + 2_000)) {
        const email = c.email.trim().toLowerCase();
        const free = email !== "" && !emails.has(email);
        if (free) emails.add(email);
        em.create(CrmContact, {
          id: c.id,
          email: free ? email : null,
          givenName: c.givenName,
          familyName: c.familyName,
          phone: c.phone.slice(0, 16),
          company: c.company,
          title: c.title,
          address: c.address === undefined ? null : (toJson(PostalAddressSchema, c.address) as StoredJson),
          city: c.city,
          region: c.region,
          source: c.source,
          lifecycleStage: c.lifecycleStage,
          attributes: c.attributes.map((a) => toJson(AttributeSchema, a) as StoredJson),
          createdAt: c.createdAt === undefined ? new Date(0) : timestampDate(c.createdAt),
          updatedAt: c.updatedAt === undefined ? new Date(0) : timestampDate(c.updatedAt),
        });
      }
      await em.flush();
    }
    const deps = { db, bus: busHandle.bus, now: () => new Date() };
    const wired = { storedContacts: storedContactsSource(db), merger: contactMerger(deps) };
    let t = performance.now();
    await detectDuplicates(wired, create(DetectDuplicatesRequestSchema, { requestId: randomUUID() }));
    const detectSeconds = (performance.now() - t) / 1000;
    t = performance.now();
    const res = await detectDuplicates(
      wired,
      create(DetectDuplicatesRequestSchema, { requestId: randomUUID(), applyMerges: true }),
    );
    const mergeSeconds = (performance.now() - t) / 1000 - detectSeconds;
    t = performance.now();
    for (const c of res.clusters) {
      if (!c.merged) continue;
      await unmergeContacts(
        deps,
        create(UnmergeContactsRequestSchema, { requestId: randomUUID(), mergeId: c.mergeId }),
      );
    }
    const unmergeSeconds = (performance.now() - t) / 1000;
    return {
      contacts: pop.contacts.length,
      detectSeconds: Number(detectSeconds.toFixed(2)),
      clusters: res.clusters.length,
      mergedContacts: res.mergedContactCount,
      mergeSeconds: Number(mergeSeconds.toFixed(2)),
      unmergeSeconds: Number(unmergeSeconds.toFixed(2)),
    };
  } finally {
    await db.close();
    await busHandle.dispose();
    await dbHandle.drop();
  }
}
