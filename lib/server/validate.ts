/**
 * protovalidate on every request message, in place of @connectrpc/validate's interceptor, which
 * attaches every violation (a 50,000-element request answered a 28 MB error, and over gRPC one too
 * large for the HTTP/2 trailers). The answer is INVALID_ARGUMENT naming the first violation's field,
 * with a google.rpc.BadRequest detail capped to the first few (lib/errors/contract.ts).
 */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { type ContractViolations, findViolations, violationsError } from "../errors/index.ts";

function validate(schema: DescMessage, message: unknown): void {
  let found: ContractViolations | undefined;
  try {
    found = findViolations(schema, message as MessageShape<DescMessage>);
  } catch (err) {
    // A rule that cannot be evaluated on this message (as @connectrpc/validate answered it).
    throw new ConnectError(String((err as Error).message ?? err).slice(0, 500), Code.InvalidArgument);
  }
  if (found !== undefined) throw violationsError(found);
}

/** Validates each request message (unary and streamed) against its contract's rules. */
export function createValidationInterceptor(): Interceptor {
  return (next) => (req) => {
    if (!req.stream) {
      validate(req.method.input, req.message);
      return next(req);
    }
    const messages = req.message;
    return next({
      ...req,
      message: (async function* () {
        for await (const m of messages) {
          validate(req.method.input, m);
          yield m;
        }
      })(),
    });
  };
}
