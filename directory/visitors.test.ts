import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { retryAborted } from "./visitors.ts";

describe("retryAborted", () => {
  /** A call that fails with `codes` in turn, then answers "ok"; counts its attempts. */
  const failing = (...codes: Code[]) => {
    const calls = { n: 0 };
    const call = async () => {
      const code = codes[calls.n++];
      if (code !== undefined) throw new ConnectError("lost a race", code);
      return "ok";
    };
    return { call, calls };
  };

  it("repeats a call that lost a race (ABORTED) until it goes through", async () => {
    const { call, calls } = failing(Code.Aborted, Code.Aborted);
    await expect(retryAborted(call, 5, 1)).resolves.toBe("ok");
    expect(calls.n).toBe(3);
  });

  it("gives up after the last attempt with the call's own error", async () => {
    const { call, calls } = failing(Code.Aborted, Code.Aborted, Code.Aborted);
    await expect(retryAborted(call, 3, 1)).rejects.toMatchObject({ code: Code.Aborted });
    expect(calls.n).toBe(3);
  });

  it("does not repeat any other failure", async () => {
    for (const code of [Code.InvalidArgument, Code.AlreadyExists, Code.Unavailable, Code.Internal]) {
      const { call, calls } = failing(code);
      await expect(retryAborted(call, 5, 1)).rejects.toMatchObject({ code });
      expect(calls.n).toBe(1);
    }
  });
});
