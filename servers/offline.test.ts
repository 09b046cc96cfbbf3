/**
 * In-process calls pass the contract's validation and the server's error mapping, as remote ones
 * do: the offline SEO client and a router-transport client of a handler that fails unexpectedly.
 */
import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { Health } from "../gen/grpc/health/v1/health_pb.ts";
import type { Logger } from "../lib/log/index.ts";
import { createInProcessClient } from "../lib/server/index.ts";
import { offlineSeoClient } from "./offline.ts";

const failure = async (p: Promise<unknown>): Promise<ConnectError> => {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail");
};

describe("in-process calls", () => {
  it("validate the request against the contract before the skill runs, naming the field", async () => {
    const seo = offlineSeoClient();
    const err = await failure(seo.generateSitemap({ requestId: randomUUID(), baseUrl: "not a url", urls: [] }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/base_url/);
    const ok = await seo.generateSitemap({
      requestId: randomUUID(),
      baseUrl: "https://example.com",
      urls: [{ loc: "https://example.com/a/" }],
    });
    expect(ok.files.length).toBeGreaterThan(0);
  });

  it("map an unexpected error to INTERNAL with a reference id that is logged, never the error itself", async () => {
    const logged: Array<Record<string, unknown>> = [];
    const log = {
      error: (_msg: string, fields: Record<string, unknown>) => logged.push(fields),
      warn: () => {},
      info: () => {},
      debug: () => {},
    } as unknown as Logger;
    const client = createInProcessClient(
      Health,
      {
        check: () => {
          throw new Error("database password=hunter2 rejected");
        },
      },
      { log },
    );
    const err = await failure(client.check({ service: "" }));
    expect(err.code).toBe(Code.Internal);
    expect(err.rawMessage).not.toMatch(/hunter2/);
    const ref = /ref ([0-9a-f-]{36})/.exec(err.rawMessage)?.[1];
    expect(ref).toBeDefined();
    expect(logged.map((f) => f.ref)).toEqual([ref]);
  });
});
