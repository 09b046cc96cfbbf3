/** Assertion helpers for Connect errors. */
import { Code, ConnectError } from "@connectrpc/connect";
import { expect } from "vitest";

/** Awaits `p`, expects it to fail with `code` (and a message matching `message`), and returns the error. */
export async function expectCode(p: Promise<unknown>, code: Code, message?: RegExp): Promise<ConnectError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${Code[code]}`).toBeInstanceOf(ConnectError);
  expect(Code[(err as ConnectError).code], (err as ConnectError).message).toBe(Code[code]);
  if (message) expect((err as ConnectError).rawMessage).toMatch(message);
  return err as ConnectError;
}

/** Awaits `p`, expects it to fail, and returns what it threw (any error, not only Connect's). */
export async function failure(p: Promise<unknown>): Promise<unknown> {
  const outcome = await p.then(
    () => ({ failed: false as const }),
    (error: unknown) => ({ failed: true as const, error }),
  );
  if (!outcome.failed) throw new Error("expected the call to fail");
  return outcome.error;
}
