import { randomUUID } from "node:crypto";
import { create, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type InteractionTracked as InteractionTrackedMessage,
  InteractionTrackedSchema,
} from "../../../gen/mesh/crm/v1/crm_events_pb.ts";
import {
  type ContactSchema,
  type InteractionSchema,
  InteractionType,
  TouchpointChannel,
  type TrackInteractionRequest,
  TrackInteractionRequestSchema,
  type TrackInteractionResponse,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { Bus } from "../../../lib/bus/index.ts";
import { startOutboxRelay } from "../../../lib/bus/index.ts";
import { type Database, openDatabase, runInUnitOfWork } from "../../../lib/db/index.ts";
import { ConflictError, InvalidInputError } from "../../../lib/errors/index.ts";
import { createLogger } from "../../../lib/log/index.ts";
import { createCatalog } from "../../../lib/registry/index.ts";
import type { AgentDeps } from "../../../lib/server/index.ts";
import { domains } from "../../../servers/domains.ts";
import { eventually, isolatedBus, isolatedDatabase } from "../../../test/support/backbone.ts";
import { CrmContact, CrmIdentityNode, CrmIdentitySet, CrmInteraction } from "../entities.ts";
import { trackInteraction } from "./track-interaction.ts";

type InteractionInit = MessageInitShape<typeof InteractionSchema>;
type ContactInit = MessageInitShape<typeof ContactSchema>;

const log = createLogger("warn");
const start = Date.parse("2025-01-15T12:00:00Z");
let clock = start;
const now = (): Date => new Date(clock);

/** Minutes after the start of the test day, as the interaction's occurred_at. */
const at = (minutes: number) => timestampFromDate(new Date(start - 86_400_000 + minutes * 60_000));

describe("crm.interaction_tracking on PostgreSQL and NATS", () => {
  let dbHandle: Awaited<ReturnType<typeof isolatedDatabase>>;
  let busHandle: Awaited<ReturnType<typeof isolatedBus>>;
  let db: Database;
  let bus: Bus;
  let relay: ReturnType<typeof startOutboxRelay>;
  let deps: Omit<AgentDeps, "config" | "server" | "nodeId">;

  beforeAll(async () => {
    dbHandle = await isolatedDatabase();
    busHandle = await isolatedBus("crm-test");
    bus = busHandle.bus;
    db = await openDatabase({ url: dbHandle.url, domain: domains.operations, log });
    relay = startOutboxRelay(db, bus, { log, pollMs: 100 });
    deps = { client: undefined as never, catalog: createCatalog(), log, now, db, bus };
  });
  afterAll(async () => {
    await relay?.stop();
    await db?.close();
    await busHandle?.dispose();
    await dbHandle?.drop();
  });

  function request(
    interaction: InteractionInit,
    more: { contact?: ContactInit; skipContactCreation?: boolean } = {},
  ): TrackInteractionRequest {
    return create(TrackInteractionRequestSchema, {
      requestId: randomUUID(),
      interaction: {
        type: InteractionType.PAGE_VIEW,
        channel: TouchpointChannel.WEB,
        occurredAt: at(0),
        ...interaction,
      },
      ...more,
    });
  }
  const track = (interaction: InteractionInit, more: { contact?: ContactInit; skipContactCreation?: boolean } = {}) =>
    trackInteraction(deps, request(interaction, more));
  const pageView = (eventId: string, anonymousId: string, minute: number) =>
    track({
      eventId,
      anonymousId,
      occurredAt: at(minute),
      url: `https://example.com/assisted-living/austin-tx?p=${minute}`,
    });

  const eventsInStream = async (): Promise<number> => (await bus.jsm.streams.info(bus.streams.events)).state.messages;
  /** Waits until the relay has published everything committed so far; returns the stream's message count. */
  async function published(): Promise<number> {
    await relay.flush();
    const outbox = async () =>
      Number((await db.fork().getConnection().execute(`select count(*) as n from "operations"."outbox"`))[0]?.n);
    await eventually(async () => ((await outbox()) === 0 ? true : undefined));
    return eventsInStream();
  }
  /** The InteractionTracked events in the stream, oldest first. */
  async function trackedEvents(): Promise<Array<{ msgId: string | undefined; event: InteractionTrackedMessage }>> {
    const out = [];
    const n = await published();
    for (let seq = 1; seq <= n; seq++) {
      const m = await bus.jsm.streams.getMessage(bus.streams.events, { seq });
      if (m === null) continue;
      expect(m.subject).toBe(`${bus.prefix}.events.crm.interaction_tracked`);
      out.push({ msgId: m.header.get("Nats-Msg-Id"), event: fromBinary(InteractionTrackedSchema, m.data) });
    }
    return out;
  }
  const eventFor = async (res: TrackInteractionResponse) => {
    const found = (await trackedEvents()).filter((e) => e.event.interactionId === res.interaction?.id);
    expect(found).toHaveLength(1);
    return found[0]?.event as InteractionTrackedMessage;
  };
  const interactionsOf = (contactId: string) => db.fork().count(CrmInteraction, { contact: contactId });

  it("creates a contact for an enquiry with a new email and stitches the visitor's earlier page views", async () => {
    for (let i = 0; i < 3; i++) {
      const res = await pageView(`pv-mary-${i}`, "anon-mary-laptop", i);
      expect(res.contactId).toBe("");
      expect(res.anonymousIds).toEqual(["anon-mary-laptop"]);
      expect(res.duplicateEvent).toBe(false);
    }
    const res = await track(
      {
        eventId: "enq-mary",
        anonymousId: "anon-mary-laptop",
        email: "Mary.Jones@Example.COM",
        type: InteractionType.ENQUIRY,
        city: "Austin",
        region: "TX",
        occurredAt: at(10),
        properties: [{ key: "care_type", value: { kind: { case: "stringValue", value: "memory care" } } }],
      },
      { contact: { givenName: "Mary", familyName: "Jones", phone: "+15125550143" } },
    );
    expect(res.contactCreated).toBe(true);
    expect(res.stitched).toBe(true);
    expect(res.stitchedInteractionCount).toBe(3);
    expect(res.anonymousIds).toEqual(["anon-mary-laptop"]);
    expect(res.interaction?.contactId).toBe(res.contactId);
    expect(res.interaction?.email).toBe("mary.jones@example.com");
    expect(res.interaction?.properties[0]?.key).toBe("care_type");
    expect(await interactionsOf(res.contactId)).toBe(4);

    const contact = await db.fork().findOneOrFail(CrmContact, { id: res.contactId });
    expect(contact).toMatchObject({
      email: "mary.jones@example.com",
      givenName: "Mary",
      familyName: "Jones",
      phone: "+15125550143",
      city: "Austin",
      region: "TX",
    });

    const event = await eventFor(res);
    expect(event).toMatchObject({
      eventId: "enq-mary",
      contactId: res.contactId,
      anonymousId: "anon-mary-laptop",
      type: InteractionType.ENQUIRY,
      city: "Austin",
      region: "TX",
      contactCreated: true,
      stitchedInteractionCount: 3,
    });
    expect(event.occurredAt).toEqual(at(10));
  });

  it("joins a second anonymous id to the contact's identity set when it arrives with the known email", async () => {
    const mary = await db.fork().findOneOrFail(CrmContact, { email: "mary.jones@example.com" });
    await pageView("pv-mary-phone-1", "anon-mary-phone", 20);
    await pageView("pv-mary-phone-2", "anon-mary-phone", 21);
    const res = await track({
      eventId: "form-mary-phone",
      anonymousId: "anon-mary-phone",
      email: "MARY.JONES@example.com",
      type: InteractionType.FORM_SUBMISSION,
      occurredAt: at(22),
    });
    expect(res.contactId).toBe(mary.id);
    expect(res.contactCreated).toBe(false);
    expect(res.stitchedInteractionCount).toBe(2);
    expect(res.anonymousIds).toEqual(["anon-mary-laptop", "anon-mary-phone"]);
    // Later page views of either device are attributed at once, with nothing left to stitch.
    const later = await pageView("pv-mary-phone-3", "anon-mary-phone", 30);
    expect(later.contactId).toBe(mary.id);
    expect(later.stitched).toBe(false);
    expect(later.anonymousIds).toEqual(["anon-mary-laptop", "anon-mary-phone"]);
    expect(await interactionsOf(mary.id)).toBe(8);
  });

  it("merges two contacts' identity sets that meet through a shared anonymous id, keeping the older contact", async () => {
    clock = start + 1000;
    const older = await track({
      eventId: "enq-old",
      anonymousId: "anon-old",
      email: "old@example.com",
      type: InteractionType.ENQUIRY,
    });
    clock = start + 2000;
    const newer = await track({
      eventId: "enq-new",
      anonymousId: "anon-new",
      email: "new@example.com",
      type: InteractionType.ENQUIRY,
    });
    await pageView("pv-new-1", "anon-new", 40);
    // A shared device (say the family tablet) is first seen with the newer contact's email …
    await track({ eventId: "pv-tablet-new", anonymousId: "anon-tablet", email: "new@example.com", occurredAt: at(41) });
    await pageView("pv-tablet-1", "anon-tablet", 42);
    expect(await interactionsOf(newer.contactId)).toBe(4);
    // … then with the older contact's email: the two sets are one person.
    const res = await track({
      eventId: "pv-tablet-old",
      anonymousId: "anon-tablet",
      email: "old@example.com",
      occurredAt: at(43),
    });
    expect(res.contactId).toBe(older.contactId);
    expect(res.contactCreated).toBe(false);
    expect(res.stitchedInteractionCount).toBe(4);
    expect(res.anonymousIds).toEqual(["anon-new", "anon-old", "anon-tablet"]);
    expect(await interactionsOf(older.contactId)).toBe(6);
    expect(await interactionsOf(newer.contactId)).toBe(0);

    const em = db.fork();
    const loser = await em.findOneOrFail(CrmContact, { id: newer.contactId });
    expect(loser.mergedInto).toBe(older.contactId);
    expect(loser.version).toBe(2);
    // One set holds every identity of both people, and it belongs to the older contact.
    const nodes = await em.find(CrmIdentityNode, {
      value: {
        $in: [
          "anon-old",
          "anon-new",
          "anon-tablet",
          "old@example.com",
          "new@example.com",
          older.contactId,
          newer.contactId,
        ],
      },
    });
    expect(nodes).toHaveLength(7);
    expect(new Set(nodes.map((n) => n.set)).size).toBe(1);
    const set = await em.findOneOrFail(CrmIdentitySet, { id: nodes[0]?.set as string });
    expect(set).toMatchObject({ contact: older.contactId, size: 7 });
    expect((await eventFor(res)).mergedContactIds).toEqual([newer.contactId]);

    // The merged contact's email, and its contact id, now resolve to the survivor.
    const byEmail = await track({
      eventId: "email-open-new",
      email: "new@example.com",
      type: InteractionType.EMAIL_OPEN,
    });
    expect(byEmail.contactId).toBe(older.contactId);
    const byId = await track({ eventId: "call-new", contactId: newer.contactId, type: InteractionType.CALL });
    expect(byId.contactId).toBe(older.contactId);
    expect(byId.anonymousIds).toEqual(["anon-new", "anon-old", "anon-tablet"]);
    clock = start;
  });

  it("answers a repeated event id with the stored interaction and writes or emits nothing", async () => {
    const first = await pageView("pv-dup", "anon-dup", 50);
    const eventsBefore = await published();
    const rowsBefore = await db.fork().count(CrmInteraction, {});
    // Same event id, other content: still the same event.
    const again = await track({
      eventId: "pv-dup",
      anonymousId: "anon-other",
      email: "dup@example.com",
      occurredAt: at(51),
    });
    expect(again.duplicateEvent).toBe(true);
    expect(again.interaction).toEqual(first.interaction);
    expect(again.anonymousIds).toEqual(["anon-dup"]);
    expect(again.contactCreated).toBe(false);
    expect(await db.fork().count(CrmInteraction, {})).toBe(rowsBefore);
    expect(await db.fork().count(CrmContact, { email: "dup@example.com" })).toBe(0);
    expect(await db.fork().count(CrmIdentityNode, { value: "anon-other" })).toBe(0);
    await new Promise((r) => setTimeout(r, 200));
    expect(await published()).toBe(eventsBefore);
  });

  it("publishes exactly one InteractionTracked per new interaction, with the interaction id as message id", async () => {
    const events = await trackedEvents();
    const rows = await db.fork().find(CrmInteraction, {});
    expect(events).toHaveLength(rows.length);
    expect(new Set(events.map((e) => e.event.eventId))).toEqual(new Set(rows.map((r) => r.eventId)));
    for (const e of events) expect(e.msgId).toBe(`crm.interaction_tracked.${e.event.interactionId}`);
  });

  it("fills only the empty fields of the resolved contact", async () => {
    const first = await track(
      { eventId: "enq-fill-1", email: "fill@example.com", type: InteractionType.ENQUIRY, city: "Dallas", region: "TX" },
      {
        contact: {
          givenName: "Ann",
          source: "web-enquiry",
          attributes: [{ key: "care_type", value: { kind: { case: "stringValue", value: "assisted living" } } }],
        },
      },
    );
    const res = await track(
      {
        eventId: "enq-fill-2",
        contactId: first.contactId,
        type: InteractionType.ENQUIRY,
        city: "Austin",
        region: "TX",
      },
      {
        contact: {
          givenName: "Annie",
          familyName: "Lee",
          phone: "+12145550100",
          company: "Lee Family",
          source: "sales-import",
          city: "Houston",
          address: {
            streetLines: ["1 Main St"],
            locality: "Dallas",
            region: "TX",
            postalCode: "75201",
            countryCode: "US",
          },
          attributes: [
            { key: "care_type", value: { kind: { case: "stringValue", value: "memory care" } } },
            { key: "budget_usd", value: { kind: { case: "intValue", value: 6000n } } },
          ],
        },
      },
    );
    expect(res.contactId).toBe(first.contactId);
    expect(res.contactCreated).toBe(false);
    const c = await db.fork().findOneOrFail(CrmContact, { id: first.contactId });
    expect(c).toMatchObject({
      givenName: "Ann",
      familyName: "Lee",
      phone: "+12145550100",
      company: "Lee Family",
      source: "web-enquiry",
      city: "Dallas",
      region: "TX",
      version: 2,
    });
    expect(c.address).toMatchObject({ locality: "Dallas", postalCode: "75201" });
    expect(c.attributes).toEqual([
      { key: "care_type", value: { stringValue: "assisted living" } },
      { key: "budget_usd", value: { intValue: "6000" } },
    ]);
  });

  it("keeps unknown people anonymous with skip_contact_creation, and stitches them once a contact is created", async () => {
    const skipped = await track(
      {
        eventId: "dl-skip",
        anonymousId: "anon-skip",
        email: "skip@example.com",
        type: InteractionType.FORM_SUBMISSION,
      },
      { skipContactCreation: true },
    );
    expect(skipped.contactId).toBe("");
    expect(skipped.contactCreated).toBe(false);
    expect(await db.fork().count(CrmContact, { email: "skip@example.com" })).toBe(0);
    // The email already belongs to the visitor's identity set: a later call by email alone stitches both.
    const res = await track({ eventId: "enq-skip", email: "skip@example.com", type: InteractionType.ENQUIRY });
    expect(res.contactCreated).toBe(true);
    expect(res.stitchedInteractionCount).toBe(1);
    expect(res.anonymousIds).toEqual(["anon-skip"]);
  });

  it("creates one contact when concurrent calls bring the same new email", async () => {
    // A call that loses a race (a deadlock between lock holders, say) is refused as a conflict and
    // changes nothing; callers retry it, as they would an ABORTED call.
    const withRetry = async <T>(fn: () => Promise<T>): Promise<T> => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await fn();
        } catch (err) {
          if (!(err instanceof ConflictError) || attempt === 5) throw err;
        }
      }
    };
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        withRetry(() =>
          track({
            eventId: `enq-race-${i}`,
            anonymousId: `anon-race-${i}`,
            email: "Race@Example.com",
            type: InteractionType.ENQUIRY,
          }),
        ),
      ),
    );
    const ids = new Set(results.map((r) => r.contactId));
    expect(ids.size).toBe(1);
    expect(results.filter((r) => r.contactCreated)).toHaveLength(1);
    expect(await db.fork().count(CrmContact, { email: "race@example.com" })).toBe(1);
    const last = await track({ eventId: "pv-race-after", email: "race@example.com" });
    expect(last.anonymousIds).toEqual(Array.from({ length: 6 }, (_, i) => `anon-race-${i}`));
    expect(await interactionsOf(last.contactId)).toBe(7);
  });

  it("converges to one identity set and one surviving contact under concurrent merges", async () => {
    const contacts: string[] = [];
    for (let i = 0; i < 5; i++) {
      clock = start + 10_000 + i * 1000;
      const res = await track({
        eventId: `enq-chain-${i}`,
        email: `chain-${i}@example.com`,
        type: InteractionType.ENQUIRY,
      });
      contacts.push(res.contactId);
    }
    clock = start;
    // Each link visitor is seen with two neighbouring emails; all links race each other. A lost race
    // answers ABORTED (ConflictError) and is retried, as a caller would.
    const withRetry = async (eventId: string, anonymousId: string, email: string) => {
      for (let attempt = 0; ; attempt++) {
        try {
          return await track({ eventId, anonymousId, email });
        } catch (err) {
          if (!(err instanceof ConflictError) || attempt >= 20) throw err;
        }
      }
    };
    await Promise.all(
      [0, 1, 2, 3].flatMap((i) => [
        withRetry(`pv-link-${i}-a`, `anon-link-${i}`, `chain-${i}@example.com`),
        withRetry(`pv-link-${i}-b`, `anon-link-${i}`, `chain-${i + 1}@example.com`),
      ]),
    );
    const em = db.fork();
    const nodes = await em.find(CrmIdentityNode, { value: { $like: "%chain-%" } });
    const setIds = new Set(nodes.map((n) => n.set));
    expect(setIds.size).toBe(1);
    const setId = nodes[0]?.set as string;
    const set = await em.findOneOrFail(CrmIdentitySet, { id: setId });
    expect(set.contact).toBe(contacts[0]);
    expect(set.size).toBe(await em.count(CrmIdentityNode, { set: setId }));
    expect(set.size).toBe(5 + 5 + 4); // emails, contact ids, link visitors
    for (let i = 1; i < 5; i++) {
      expect((await em.findOneOrFail(CrmContact, { id: contacts[i] as string })).mergedInto).not.toBeNull();
    }
    expect(await interactionsOf(contacts[0] as string)).toBe(5 + 8);
    const res = await track({ eventId: "pv-chain-after", email: "chain-4@example.com" });
    expect(res.contactId).toBe(contacts[0]);
    expect(res.anonymousIds).toEqual(["anon-link-0", "anon-link-1", "anon-link-2", "anon-link-3"]);
  });

  it("rejects values the contract cannot check, naming the field, and writes nothing", async () => {
    const eventsBefore = await published();
    const rowsBefore = await db.fork().count(CrmInteraction, {});
    const contactsBefore = await db.fork().count(CrmContact, {});
    const nodesBefore = await db.fork().count(CrmIdentityNode, {});
    const cases: Array<[string, () => Promise<unknown>]> = [
      [
        "interaction.contact_id",
        () => track({ eventId: "bad-1", anonymousId: "anon-bad", email: "bad@example.com", contactId: randomUUID() }),
      ],
      [
        "interaction.occurred_at",
        () =>
          track({
            eventId: "bad-2",
            anonymousId: "anon-bad",
            occurredAt: timestampFromDate(new Date(start + 3 * 86_400_000)),
          }),
      ],
      [
        "contact.email",
        () => track({ eventId: "bad-3", email: "a@example.com" }, { contact: { email: "b@example.com" } }),
      ],
      ["interaction.event_id", () => track({ eventId: "   ", anonymousId: "anon-bad" })],
      ["interaction.anonymous_id", () => track({ eventId: "bad-5", anonymousId: "  ", email: "bad@example.com" })],
    ];
    for (const [field, call] of cases) {
      const err = await call().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(InvalidInputError);
      expect((err as InvalidInputError).field).toBe(field);
    }
    expect(await db.fork().count(CrmInteraction, {})).toBe(rowsBefore);
    expect(await db.fork().count(CrmContact, {})).toBe(contactsBefore);
    expect(await db.fork().count(CrmIdentityNode, {})).toBe(nodesBefore);
    await new Promise((r) => setTimeout(r, 200));
    expect(await published()).toBe(eventsBefore);
  });

  it("joins the caller's transaction: when it rolls back, the interaction, contact, identities and event vanish", async () => {
    const eventsBefore = await published();
    let contactId = "";
    await expect(
      db.transaction((em) =>
        runInUnitOfWork(db, em, async () => {
          await pageView("pv-rollback", "anon-rollback", 60);
          const res = await track({
            eventId: "enq-rollback",
            anonymousId: "anon-rollback",
            email: "rollback@example.com",
          });
          contactId = res.contactId;
          expect(res.stitchedInteractionCount).toBe(1);
          throw new Error("the idempotency record could not be stored");
        }),
      ),
    ).rejects.toThrow("could not be stored");
    expect(contactId).not.toBe("");
    const em = db.fork();
    expect(await em.count(CrmInteraction, { eventId: { $in: ["pv-rollback", "enq-rollback"] } })).toBe(0);
    expect(await em.count(CrmContact, { id: contactId })).toBe(0);
    expect(await em.count(CrmIdentityNode, { value: { $in: ["anon-rollback", "rollback@example.com"] } })).toBe(0);
    await new Promise((r) => setTimeout(r, 200));
    expect(await published()).toBe(eventsBefore);
  });
});
