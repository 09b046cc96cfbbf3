import { Code, ConnectError, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.ts";
import { SeoService } from "../../gen/mesh/seo/v1/seo_service_pb.ts";
import {
  admissionKey,
  binaryExpansion,
  jsonExpansion,
  RequestMemoryBudget,
  timeBudgetMs,
  withTimeBudget,
} from "./admission.ts";

const kib = 1024;

async function* chunks(...sizes: number[]): AsyncIterable<Uint8Array> {
  for (const n of sizes) yield new Uint8Array(n);
}

async function drain(body: AsyncIterable<Uint8Array>): Promise<number> {
  let n = 0;
  for await (const c of body) n += c.byteLength;
  return n;
}

async function refusal(p: Promise<unknown>): Promise<ConnectError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

const binary = new Headers({ "content-type": "application/proto" });
const json = new Headers({ "content-type": "application/json" });

describe("RequestMemoryBudget", () => {
  it("reserves a request's estimated decoded size as it arrives and gives it back when done", async () => {
    const budget = new RequestMemoryBudget({ capacityBytes: 10 * 1024 * kib, maxMessageBytes: 64 * kib });
    const a = budget.admit(chunks(10 * kib, 6 * kib), binary);
    expect(await drain(a.body)).toBe(16 * kib);
    expect(a.admission.reserved).toBe(16 * kib * binaryExpansion);
    expect(budget.inUse).toBe(16 * kib * binaryExpansion);
    a.done();
    expect(budget.inUse).toBe(0);
    expect(budget.peak).toBe(16 * kib * binaryExpansion);
  });

  it("counts JSON dearer than binary", async () => {
    const budget = new RequestMemoryBudget({ capacityBytes: 10 * 1024 * kib, maxMessageBytes: 64 * kib });
    const a = budget.admit(chunks(kib), json);
    await drain(a.body);
    expect(a.admission.reserved).toBe(kib * jsonExpansion);
  });

  it("refuses a request while others hold the memory, with RetryInfo, and admits it once they are done", async () => {
    const budget = new RequestMemoryBudget({ capacityBytes: 4 * 1024 * kib, maxMessageBytes: 64 * kib });
    const first = budget.admit(chunks(60 * kib), binary);
    await drain(first.body);
    const second = budget.admit(chunks(40 * kib), binary);
    const err = await refusal(drain(second.body));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toMatch(/^server busy: .* retry later$/);
    expect(err.findDetails(RetryInfoSchema)).toHaveLength(1);
    expect(budget.refused).toBe(1);
    second.done();
    expect(budget.inUse).toBe(60 * kib * binaryExpansion); // the refused one took nothing
    first.done();
    const third = budget.admit(chunks(40 * kib), binary);
    await drain(third.body);
    third.done();
    expect(budget.inUse).toBe(0);
  });

  it("refuses a declared length that can never fit before reading a byte, without RetryInfo", async () => {
    const budget = new RequestMemoryBudget({ capacityBytes: 1024 * kib, maxMessageBytes: 64 * kib });
    let pulled = 0;
    const body = (async function* () {
      pulled++;
      yield new Uint8Array(40 * kib);
    })();
    const a = budget.admit(
      body,
      new Headers({ "content-type": "application/json", "content-length": String(40 * kib) }),
    );
    const err = await refusal(drain(a.body));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toMatch(/^request too large to serve: .*send it in smaller batches$/);
    expect(err.findDetails(RetryInfoSchema)).toHaveLength(0);
    expect(pulled).toBe(0);
    a.done();
    expect(budget.inUse).toBe(0);
  });

  it("assumes a compressed body grows, up to the message limit", async () => {
    const budget = new RequestMemoryBudget({ capacityBytes: 100 * 1024 * kib, maxMessageBytes: 64 * kib });
    const a = budget.admit(
      chunks(kib),
      new Headers({ "content-type": "application/proto", "content-encoding": "gzip" }),
    );
    await drain(a.body);
    expect(a.admission.reserved).toBe(16 * kib * binaryExpansion);
    const b = budget.admit(
      chunks(60 * kib),
      new Headers({ "content-type": "application/grpc", "grpc-encoding": "gzip" }),
    );
    await drain(b.body);
    expect(b.admission.reserved).toBe(64 * kib * binaryExpansion);
    a.done();
    b.done();
  });

  it("keeps the memory of a call answered before its handler returned until the handler returns", async () => {
    const budget = new RequestMemoryBudget({ capacityBytes: 10 * 1024 * kib, maxMessageBytes: 64 * kib });
    const a = budget.admit(chunks(kib), binary);
    await drain(a.body);
    let finish = (): void => undefined;
    a.admission.holdUntil(new Promise<void>((resolve) => (finish = resolve)));
    a.done();
    expect(budget.inUse).toBe(kib * binaryExpansion);
    finish();
    await new Promise((r) => setTimeout(r, 0));
    expect(budget.inUse).toBe(0);
  });
});

function context(values = createContextValues(), timeoutMs?: number): HandlerContext {
  return { signal: new AbortController().signal, timeoutMs: () => timeoutMs, values } as unknown as HandlerContext;
}

describe("withTimeBudget", () => {
  it("answers DEADLINE_EXCEEDED past the budget, tells the skill to stop and holds its memory until it does", async () => {
    let seen: HandlerContext | undefined;
    let stopped = (): void => undefined;
    const skill = (_req: unknown, ctx: HandlerContext) => {
      seen = ctx;
      return new Promise((_, reject) => {
        stopped = () => reject(new Error("stopped"));
      });
    };
    const held: Promise<unknown>[] = [];
    const values = createContextValues().set(admissionKey, { reserved: 0, holdUntil: (p) => held.push(p) });
    const call = withTimeBudget(skill, 30, "skill seo.example")({}, context(values));
    const err = await refusal(Promise.resolve(call));
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(err.rawMessage).toBe("skill seo.example exceeded its time budget of 30 ms");
    expect(seen?.signal.aborted).toBe(true);
    expect(held).toHaveLength(1);
    stopped();
    await expect(held[0]).rejects.toThrow("stopped");
  });

  it("counts the skill's remaining time down to the budget or the caller's deadline, whichever is sooner", async () => {
    const remaining: Array<number | undefined> = [];
    const skill = (_req: unknown, ctx: HandlerContext) => {
      remaining.push(ctx.timeoutMs());
      return "ok";
    };
    expect(await withTimeBudget(skill, 60_000, "s")({}, context())).toBe("ok");
    expect(await withTimeBudget(skill, 60_000, "s")({}, context(undefined, 5_000))).toBe("ok");
    expect(remaining[0]).toBeGreaterThan(59_000);
    expect(remaining[0]).toBeLessThanOrEqual(60_000);
    expect(remaining[1]).toBe(5_000);
  });

  it("passes a skill's own errors through", async () => {
    const skill = () => {
      throw new ConnectError("bad", Code.InvalidArgument);
    };
    const err = await refusal(Promise.resolve(withTimeBudget(skill, 1000, "s")({}, context())));
    expect(err.code).toBe(Code.InvalidArgument);
  });

  it("reads a skill's own budget from its contract, else the server's default", () => {
    expect(timeBudgetMs(SeoService.method.optimizePageSpeed, 120_000)).toBe(1_500_000);
    expect(timeBudgetMs(SeoService.method.generateSitemap, 120_000)).toBe(120_000);
  });
});
