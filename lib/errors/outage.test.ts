import { createServer } from "node:net";
import { Code } from "@connectrpc/connect";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { toConnectError } from "./errors.ts";
import { outageOf } from "./outage.ts";

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe("outages", () => {
  it("map a database that cannot be reached to UNAVAILABLE with RetryInfo, not INTERNAL", async () => {
    const pool = new pg.Pool({ host: "127.0.0.1", port: await closedPort(), user: "postgres" });
    const err = await pool.query("select 1").then(
      () => undefined,
      (e: unknown) => e,
    );
    await pool.end();
    expect(outageOf(err)).toBe("database");
    const internal: string[] = [];
    const ce = toConnectError(err, (_e, ref) => internal.push(ref));
    expect(ce.code).toBe(Code.Unavailable);
    expect(ce.rawMessage).toBe("the database this call needs is unreachable right now; retry later");
    expect(ce.metadata.get("retry-after")).toBe("1");
    expect(ce.details).toHaveLength(1);
    expect(internal).toEqual([]);
  });

  it("leave a refused connection to anything else (a site a skill fetches) to the usual mapping", async () => {
    const err = await fetch(`http://127.0.0.1:${await closedPort()}/`).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(outageOf(err)).toBeUndefined();
    const refs: string[] = [];
    expect(toConnectError(err, (_e, ref) => refs.push(ref)).code).toBe(Code.Internal);
    expect(refs).toHaveLength(1);
    expect(outageOf(new Error("connect ECONNREFUSED"))).toBeUndefined();
  });
});
