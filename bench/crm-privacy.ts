/**
 * Consent and privacy: (1) the send guard's cost per message — `blockedReason` against a
 * suppression list and a do-not-contact table of 10,000 rows each, sequential checks; (2) one
 * EraseContact while the events stream holds `events` (default 20,000) other messages, which the
 * erasure scans to shred the contact's. In process, on an isolated database and NATS prefix.
 *
 * `node bench/crm-privacy.ts [events]` runs it alone and prints the result.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { eraseContact } from "../agents/crm/privacy/privacy.ts";
import { trackInteraction } from "../agents/crm/skills/track-interaction.ts";
import { blockedReason } from "../agents/email/consent/guard.ts";
import { eraseRecipientData } from "../agents/email/consent/privacy.ts";
import {
  EraseContactRequestSchema,
  InteractionType,
  TouchpointChannel,
  TrackInteractionRequestSchema,
} from "../gen/mesh/crm/v1/crm_service_pb.ts";
import { EraseRecipientDataRequestSchema } from "../gen/mesh/email/v1/email_service_pb.ts";
import { startOutboxRelay } from "../lib/bus/index.ts";
import { openDatabase } from "../lib/db/index.ts";
import { createLogger } from "../lib/log/index.ts";
import type { MeshClient } from "../lib/transport/index.ts";
import { domains } from "../servers/domains.ts";
import { isolatedBus, isolatedDatabase } from "../test/support/backbone.ts";

/** Result of the scenario. */
export interface CrmPrivacyResult {
  /** Mean time of one guard check, ms. */
  guardCheckMs: number;
  guardChecks: number;
  /** Messages in the events stream when the erasure ran. */
  streamMessages: number;
  /** EraseContact, s. */
  eraseSeconds: number;
  /** Event messages the erasure shredded. */
  shredded: number;
}

/** Runs the scenario. */
export async function benchCrmPrivacy(opts: { events: number }): Promise<CrmPrivacyResult> {
  const log = createLogger("error");
  const dbHandle = await isolatedDatabase();
  const busHandle = await isolatedBus("bench-privacy");
  const db = await openDatabase({ url: dbHandle.url, domain: domains.operations, log });
  const bus = busHandle.bus;
  const relay = startOutboxRelay(db, bus, { log, pollMs: 50 });
  const now = () => new Date();
  try {
    const conn = db.fork().getConnection();
    await conn.execute(
      `insert into "operations"."email_suppression" (address, reason, created_at)
       select 'user' || i || '@example.org', 'unsubscribed', now() from generate_series(1, 10000) i`,
    );
    await conn.execute(
      `insert into "operations"."email_do_not_contact" (address_sha256, blocked, reason, changed_at, updated_at)
       select encode(sha256(convert_to('dnc' || i || '@example.org', 'UTF8')), 'hex'), true, 'crm', now(), now()
       from generate_series(1, 10000) i`,
    );
    const guardChecks = 2000;
    const g0 = performance.now();
    for (let i = 0; i < guardChecks; i++) {
      await blockedReason(db.fork(), "operations", `${i % 2 === 0 ? "user" : "free"}${i}@example.org`);
    }
    const guardCheckMs = (performance.now() - g0) / guardChecks;

    // Other traffic in the stream, then the person's own interactions.
    const subject = `${bus.prefix}.events.crm.interaction_tracked`;
    for (let i = 0; i < opts.events; i += 500) {
      await Promise.all(
        Array.from({ length: Math.min(500, opts.events - i) }, (_, k) =>
          bus.publish(subject, randomBytes(200), { msgId: `filler-${i + k}` }),
        ),
      );
    }
    const deps = { db, bus, now };
    const tracked = await trackInteraction(
      deps,
      create(TrackInteractionRequestSchema, {
        requestId: randomUUID(),
        interaction: {
          eventId: "bench-1",
          anonymousId: "anon-bench-person",
          email: "bench.person@example.net",
          type: InteractionType.FORM_SUBMISSION,
          channel: TouchpointChannel.WEB,
          occurredAt: timestampFromDate(new Date(Date.now() - 60_000)),
        },
        contact: { givenName: "Bench", familyName: "Person" },
      }),
    );
    await relay.flush();
    const email = {
      eraseRecipientData: (req: { requestId: string; addresses: string[] }) =>
        eraseRecipientData({ db, now }, create(EraseRecipientDataRequestSchema, req)),
    };
    const client = { agent: () => email } as unknown as MeshClient;
    const streamMessages = (await bus.jsm.streams.info(bus.streams.events)).state.messages;
    const e0 = performance.now();
    const res = await eraseContact(
      { db, bus, client, now, log },
      create(EraseContactRequestSchema, { requestId: randomUUID(), contactId: tracked.contactId }),
    );
    const eraseSeconds = (performance.now() - e0) / 1000;
    return {
      guardCheckMs: Number(guardCheckMs.toFixed(3)),
      guardChecks,
      streamMessages,
      eraseSeconds: Number(eraseSeconds.toFixed(2)),
      shredded: res.counts?.eventMessages ?? 0,
    };
  } finally {
    await relay.stop();
    await db.close();
    await busHandle.dispose();
    await dbHandle.drop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchCrmPrivacy({ events: Number(process.argv[2] ?? 20_000) });
  process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  process.exit(0);
}
