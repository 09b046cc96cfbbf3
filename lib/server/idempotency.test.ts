/**
 * The idempotency interceptor against a real PostgreSQL: keyed calls run once, and a skill without
 * side effects runs outside any transaction (a crawl must not keep a connection idle in one).
 */
import { Code, createClient, createRouterTransport } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CrmService } from "../../gen/mesh/crm/v1/crm_service_pb.ts";
import { ResearchService } from "../../gen/mesh/research/v1/research_service_pb.ts";
import { domains } from "../../servers/domains.ts";
import { isolatedDatabase } from "../../test/support/backbone.ts";
import { expectCode } from "../../test/support/expect.ts";
import { type Database, openDatabase } from "../db/index.ts";
import { createLogger } from "../log/index.ts";
import { createIdempotencyInterceptor, IDEMPOTENCY_HEADER, withReplays } from "./idempotency.ts";

let handle: Awaited<ReturnType<typeof isolatedDatabase>>;
let db: Database;
let probe: pg.Client;

beforeAll(async () => {
  handle = await isolatedDatabase();
  db = await openDatabase({ url: handle.url, domain: domains.operations, log: createLogger("warn") });
  probe = new pg.Client({ connectionString: handle.url });
  await probe.connect();
});
afterAll(async () => {
  await probe?.end();
  await db?.close();
  await handle?.drop();
});

/** Sessions of the test database (other than the probe's) with a transaction open. */
async function openTransactions(): Promise<number> {
  const r = await probe.query<{ n: string }>(
    "select count(*) as n from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and xact_start is not null",
  );
  return Number(r.rows[0]?.n ?? 0);
}

const seen = { research: [] as number[], crm: [] as number[] };
const transport = createRouterTransport(
  (router) => {
    router.service(
      ResearchService,
      withReplays({
        // NO_SIDE_EFFECTS
        async keywordResearch() {
          seen.research.push(await openTransactions());
          return { keywords: [{ keyword: `call ${seen.research.length}` }] };
        },
      }) as never,
    );
    router.service(
      CrmService,
      withReplays({
        // IDEMPOTENT: its writes and its stored result commit together.
        async trackInteraction() {
          seen.crm.push(await openTransactions());
          return {};
        },
      }) as never,
    );
  },
  { router: { interceptors: [createIdempotencyInterceptor(() => db)] } },
);
const research = createClient(ResearchService, transport);
const crm = createClient(CrmService, transport);
const keyed = (key: string) => ({ headers: { [IDEMPOTENCY_HEADER]: key } });

describe("idempotency interceptor", () => {
  it("runs a skill without side effects outside any transaction, once per key", async () => {
    const req = { keywords: [{ keyword: "memory care austin" }] };
    const first = await research.keywordResearch(req, keyed("k1"));
    expect(seen.research).toEqual([0]);
    const again = await research.keywordResearch(req, keyed("k1"));
    expect(again.keywords[0]?.keyword).toBe(first.keywords[0]?.keyword);
    expect(seen.research).toHaveLength(1); // answered from the stored result
    await expectCode(research.keywordResearch({ keywords: [{ keyword: "other" }] }, keyed("k1")), Code.AlreadyExists);
  });

  it("runs a skill with effects inside the transaction that stores its result", async () => {
    const req = { requestId: "3f1c2a9e-8b7d-4c6e-9a1f-2b3c4d5e6f70" };
    await crm.trackInteraction(req as never);
    await crm.trackInteraction(req as never);
    expect(seen.crm).toEqual([1]); // its own transaction, seen by the probe; the replay ran nothing
  });

  it("runs a self-transacted skill with effects outside its transaction too, once per key", async () => {
    const seenHere: number[] = [];
    const own = createClient(
      CrmService,
      createRouterTransport(
        (router) => {
          router.service(
            CrmService,
            withReplays({
              async trackInteraction() {
                seenHere.push(await openTransactions());
                return {};
              },
            }) as never,
          );
        },
        {
          router: {
            interceptors: [
              createIdempotencyInterceptor(
                () => db,
                (p) => p === "mesh.crm.v1.CrmService/TrackInteraction",
              ),
            ],
          },
        },
      ),
    );
    const req = { requestId: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d" };
    await own.trackInteraction(req as never);
    await own.trackInteraction(req as never);
    expect(seenHere).toEqual([0]);
  });
});
