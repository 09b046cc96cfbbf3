/**
 * A newsletter send worker in a process of its own, for the test that kills it with SIGKILL
 * mid-send (newsletter.test.ts). Reads MESH_TEST_DATABASE_URL and MESH_TEST_SMTP_URL; the schema is
 * already migrated by the test.
 */

import type { EntitySchema } from "@mikro-orm/postgresql";
import { openDatabase } from "../../../lib/db/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { createMailTransport } from "../delivery.ts";
import { emailEntities } from "../entities.ts";
import { migrations } from "../migrations/index.ts";
import { loadUnsubscribeKey } from "./unsubscribe.ts";
import { createNewsletterWorker } from "./worker.ts";

const log = createLogger("error");
const db = await openDatabase({
  url: process.env.MESH_TEST_DATABASE_URL as string,
  domain: { schema: "operations", entities: emailEntities as readonly EntitySchema[], migrations },
  log,
  migrate: false,
});
const now = () => new Date();
const worker = createNewsletterWorker({
  db,
  bus: { prefix: "crash-child" },
  transport: createMailTransport({
    smtpUrl: process.env.MESH_TEST_SMTP_URL,
    outboxDir: "/nonexistent",
    poolConnections: 4,
  }),
  log,
  now,
  nodeId: `crash-child-${process.pid}`,
  key: () => loadUnsubscribeKey(db, undefined, now),
  batch: 40,
  concurrency: 4,
  pollMs: 20,
});
worker.start();
process.stdout.write("ready\n");
