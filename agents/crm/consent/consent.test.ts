import { randomUUID } from "node:crypto";
import { create, fromBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ConsentChanged as ConsentChangedMessage,
  ConsentChangedSchema,
  ConsentChangeKind,
} from "../../../gen/mesh/crm/v1/crm_events_pb.ts";
import {
  AddDoNotContactRequestSchema,
  ConsentChannel,
  ConsentState,
  GetConsentRequestSchema,
  InteractionType,
  ListDoNotContactRequestSchema,
  RecordConsentRequestSchema,
  RemoveDoNotContactRequestSchema,
  TouchpointChannel,
  TrackInteractionRequestSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { InvalidInputError, NotFoundError } from "../../../lib/errors/index.ts";
import { domains } from "../../../servers/domains.ts";
import { type BackboneFixture, eventually, openBackboneFixture } from "../../../test/support/backbone.ts";
import { trackInteraction } from "../skills/track-interaction.ts";
import { addDoNotContact, getConsent, listDoNotContact, recordConsent, removeDoNotContact } from "./consent.ts";
import { startConsentFollower } from "./follower.ts";

// Hex SHA-256 of the addresses, from Python: hashlib.sha256(b"ann.consent@example.com").hexdigest().
const annHash = "433e3a501fc85ddfdfd98a2d2355f977bef9d13fb77fc2dbe73e9a3e04133904";
const annAltHash = "89f3378eefdf38365ea8c78b3d05d536a42fbe95c8d5fe4751acdc3cf3b4a553";
const bobHash = "0dcc6d58d384d6f1f093c160f371170130b464b288e00da68d286c4ff3db8b23";

let clock = Date.parse("2026-03-01T10:00:00Z");
const now = () => new Date(clock);
const at = (iso: string) => timestampFromDate(new Date(iso));

describe("crm consent and do-not-contact on PostgreSQL and NATS", () => {
  let fx: BackboneFixture;
  let deps: Parameters<typeof recordConsent>[0] & Parameters<typeof trackInteraction>[0];
  let annId = "";

  /** Every ConsentChanged in the stream so far, oldest first. */
  async function consentEvents(): Promise<ConsentChangedMessage[]> {
    await fx.relay.flush();
    await eventually(async () => {
      const [r] = await fx.db.fork().getConnection().execute(`select count(*)::int as n from "operations"."outbox"`);
      return r?.n === 0 ? true : undefined;
    });
    const info = await fx.bus.jsm.streams.info(fx.bus.streams.events);
    const out: ConsentChangedMessage[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await fx.bus.jsm.streams.getMessage(fx.bus.streams.events, { seq }).catch(() => null);
      if (m?.subject === `${fx.bus.prefix}.events.crm.consent_changed`) {
        out.push(fromBinary(ConsentChangedSchema, m.data));
      }
    }
    return out;
  }

  beforeAll(async () => {
    fx = await openBackboneFixture(domains.operations, "crm-consent-test");
    deps = { db: fx.db, bus: fx.bus, now };
    const track = (email: string, eventId: string) =>
      trackInteraction(
        deps,
        create(TrackInteractionRequestSchema, {
          requestId: randomUUID(),
          interaction: {
            eventId,
            anonymousId: "anon-ann-1",
            email,
            type: InteractionType.FORM_SUBMISSION,
            channel: TouchpointChannel.WEB,
            occurredAt: at("2026-02-27T09:00:00Z"),
          },
          contact: { givenName: "Ann", familyName: "Consent" },
        }),
      );
    const first = await track("Ann.Consent@example.com", "ev-ann-1");
    annId = first.contactId;
    // The same visitor later gives a second address: it is stitched to Ann's identity set.
    await track("ann.alt@example.com", "ev-ann-2");
  });
  afterAll(async () => {
    await fx?.dispose();
  });

  const consent = (state: ConsentState, occurredAt: string, requestId = randomUUID()) =>
    recordConsent(
      deps,
      create(RecordConsentRequestSchema, {
        requestId,
        contactId: annId,
        channel: ConsentChannel.EMAIL,
        state,
        source: "preference-center",
        occurredAt: at(occurredAt),
      }),
    );

  it("records a withdrawal as the current state and announces every address of the contact as blocked", async () => {
    const before = (await consentEvents()).length;
    const res = await consent(ConsentState.WITHDRAWN, "2026-02-28T12:00:00Z");
    expect(res.current?.state).toBe(ConsentState.WITHDRAWN);
    expect(res.current?.source).toBe("preference-center");
    const events = (await consentEvents()).slice(before);
    expect(events).toHaveLength(1);
    const e = events[0] as ConsentChangedMessage;
    expect(e.kind).toBe(ConsentChangeKind.CONSENT);
    expect(e.contactId).toBe(annId);
    expect(e.channel).toBe(ConsentChannel.EMAIL);
    expect([...e.emailSha256].sort()).toEqual([annHash, annAltHash].sort());
    expect([...e.blockedEmailSha256].sort()).toEqual([annHash, annAltHash].sort());
  });

  it("keeps the latest decision by occurred_at: an older grant is history only and announces nothing", async () => {
    const before = (await consentEvents()).length;
    const res = await consent(ConsentState.GRANTED, "2026-02-01T12:00:00Z");
    expect(res.record?.state).toBe(ConsentState.GRANTED);
    expect(res.current?.state).toBe(ConsentState.WITHDRAWN);
    expect((await consentEvents()).length).toBe(before);
    // A newer grant takes over and unblocks both addresses.
    const newer = await consent(ConsentState.GRANTED, "2026-03-01T09:00:00Z");
    expect(newer.current?.state).toBe(ConsentState.GRANTED);
    const events = (await consentEvents()).slice(before);
    expect(events).toHaveLength(1);
    expect(events[0]?.blockedEmailSha256).toEqual([]);
  });

  it("replays a request id without a second record", async () => {
    const id = randomUUID();
    const a = await consent(ConsentState.GRANTED, "2026-02-15T12:00:00Z", id);
    const b = await consent(ConsentState.GRANTED, "2026-02-15T12:00:00Z", id);
    expect(b.record?.id).toBe(a.record?.id);
    await expect(consent(ConsentState.WITHDRAWN, "2026-02-15T12:00:00Z", id)).rejects.toThrow(InvalidInputError);
  });

  it("pages the history newest first", async () => {
    const all = await getConsent(
      deps,
      create(GetConsentRequestSchema, { contactId: annId, pageSize: 0, pageToken: "" }),
    );
    expect(all.history.length).toBe(4);
    const p1 = await getConsent(
      deps,
      create(GetConsentRequestSchema, { contactId: annId, pageSize: 3, pageToken: "" }),
    );
    expect(p1.history).toHaveLength(3);
    expect(p1.nextPageToken).not.toBe("");
    const p2 = await getConsent(
      deps,
      create(GetConsentRequestSchema, { contactId: annId, pageSize: 3, pageToken: p1.nextPageToken }),
    );
    expect(p2.history).toHaveLength(1);
    expect(p2.nextPageToken).toBe("");
    expect([...p1.history, ...p2.history].map((r) => r.id)).toEqual(all.history.map((r) => r.id));
    expect(all.channels.map((c) => [c.channel, c.state])).toEqual([[ConsentChannel.EMAIL, ConsentState.GRANTED]]);
    expect(all.doNotContact).toBe(false);
  });

  it("rejects bad input naming the field and changes nothing", async () => {
    const before = (await consentEvents()).length;
    const bad = create(RecordConsentRequestSchema, {
      requestId: randomUUID(),
      contactId: annId,
      channel: ConsentChannel.UNSPECIFIED,
      state: ConsentState.GRANTED,
      source: "form",
      occurredAt: at("2026-02-01T00:00:00Z"),
    });
    await expect(recordConsent(deps, bad)).rejects.toThrow(/channel/);
    await expect(
      recordConsent(deps, create(RecordConsentRequestSchema, { ...bad, channel: ConsentChannel.SMS, source: "" })),
    ).rejects.toThrow(/source/);
    await expect(
      recordConsent(
        deps,
        create(RecordConsentRequestSchema, { ...bad, channel: ConsentChannel.SMS, contactId: randomUUID() }),
      ),
    ).rejects.toThrow(NotFoundError);
    expect((await consentEvents()).length).toBe(before);
  });

  it("adds, lists and removes do-not-contact entries by address and by contact", async () => {
    const before = (await consentEvents()).length;
    const add = (target: { case: "email"; value: string } | { case: "contactId"; value: string }) => {
      clock += 1000; // entries are listed by when they were added
      return addDoNotContact(
        deps,
        create(AddDoNotContactRequestSchema, {
          requestId: randomUUID(),
          target,
          reason: "asked by phone",
          source: "support",
        }),
      );
    };
    const bob = await add({ case: "email", value: "Bob.DNC@example.com" });
    expect(bob.created).toBe(true);
    expect(bob.entry?.email).toBe("bob.dnc@example.com");
    const again = await add({ case: "email", value: "bob.dnc@example.com" });
    expect(again.created).toBe(false);
    expect(again.entry?.id).toBe(bob.entry?.id);
    const ann = await add({ case: "contactId", value: annId });
    expect(ann.created).toBe(true);
    expect(
      (await getConsent(deps, create(GetConsentRequestSchema, { contactId: annId, pageSize: 1, pageToken: "" })))
        .doNotContact,
    ).toBe(true);
    await expect(add({ case: "contactId", value: randomUUID() })).rejects.toThrow(NotFoundError);

    const events = (await consentEvents()).slice(before);
    expect(events.map((e) => e.kind)).toEqual([
      ConsentChangeKind.DO_NOT_CONTACT_ADDED,
      ConsentChangeKind.DO_NOT_CONTACT_ADDED,
    ]);
    expect(events[0]?.emailSha256).toEqual([bobHash]);
    expect(events[0]?.blockedEmailSha256).toEqual([bobHash]);
    expect([...(events[1]?.blockedEmailSha256 ?? [])].sort()).toEqual([annHash, annAltHash].sort());

    const p1 = await listDoNotContact(deps, create(ListDoNotContactRequestSchema, { pageSize: 1 }));
    const p2 = await listDoNotContact(
      deps,
      create(ListDoNotContactRequestSchema, { pageSize: 1, pageToken: p1.nextPageToken }),
    );
    expect([p1.entries[0]?.email, p2.entries[0]?.contactId]).toEqual(["bob.dnc@example.com", annId]);
    expect(p2.nextPageToken).toBe("");

    const removed = await removeDoNotContact(
      deps,
      create(RemoveDoNotContactRequestSchema, { requestId: randomUUID(), target: { case: "contactId", value: annId } }),
    );
    expect(removed.removed).toBe(true);
    const none = await removeDoNotContact(
      deps,
      create(RemoveDoNotContactRequestSchema, { requestId: randomUUID(), target: { case: "contactId", value: annId } }),
    );
    expect(none.removed).toBe(false);
    const last = (await consentEvents()).slice(before + 2);
    expect(last.map((e) => e.kind)).toEqual([ConsentChangeKind.DO_NOT_CONTACT_REMOVED]);
    // Ann's consent is granted again and her entry is gone: nothing of hers stays blocked.
    expect(last[0]?.blockedEmailSha256).toEqual([]);
  });

  it("rejects a do-not-contact request without a target", async () => {
    await expect(
      addDoNotContact(deps, create(AddDoNotContactRequestSchema, { requestId: randomUUID() })),
    ).rejects.toThrow(/target/);
  });

  it("announces an address learned after the contact was blocked as blocked too", async () => {
    // Python: hashlib.sha256(b"ann.third@example.com").hexdigest()
    const thirdHash = "a02918f8a5323ae95c6773c37ca081052a7359ca73fa8a6ae90a4c18ee1def90";
    const follower = await startConsentFollower({ db: fx.db, bus: fx.bus, now });
    try {
      await addDoNotContact(
        deps,
        create(AddDoNotContactRequestSchema, { requestId: randomUUID(), target: { case: "contactId", value: annId } }),
      );
      await trackInteraction(
        deps,
        create(TrackInteractionRequestSchema, {
          requestId: randomUUID(),
          interaction: {
            eventId: "ev-ann-3",
            anonymousId: "anon-ann-1",
            email: "ann.third@example.com",
            type: InteractionType.FORM_SUBMISSION,
            channel: TouchpointChannel.WEB,
            occurredAt: at("2026-02-28T09:00:00Z"),
          },
        }),
      );
      const announced = await eventually(async () => {
        const e = (await consentEvents()).find((x) => x.blockedEmailSha256.includes(thirdHash));
        return e;
      }, 15_000);
      expect([...announced.blockedEmailSha256].sort()).toEqual([annHash, annAltHash, thirdHash].sort());
      expect(announced.contactId).toBe(annId);
    } finally {
      await follower.stop();
    }
  });
});
