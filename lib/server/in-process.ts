/**
 * Calls to services in the same process through connect-es's router transport: the request is
 * serialised, validated against the contract (protovalidate) and its errors mapped exactly as on a
 * server's port, so an in-process caller sees what a remote one would — INVALID_ARGUMENT naming the
 * field, UNIMPLEMENTED naming the skill, never a raw exception.
 */
import type { DescService } from "@bufbuild/protobuf";
import {
  type Client,
  createClient,
  createRouterTransport,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createLogger, type Logger } from "../log/index.ts";
import { createErrorInterceptor } from "./interceptors.ts";
import { createValidationInterceptor } from "./validate.ts";

/** A service implementation to route to. */
export interface RoutedService {
  service: DescService;
  impl: unknown;
}

/** Options of {@link createInProcessTransport}. */
export interface InProcessOptions {
  /** Logs unexpected errors with their reference id (default: warnings and above to stderr). */
  log?: Logger;
  /** Server interceptors (default: error mapping, then protovalidate). */
  interceptors?: Interceptor[];
  /** Client interceptors. */
  clientInterceptors?: Interceptor[];
}

/** A transport that routes to `services` in this process. */
export function createInProcessTransport(services: readonly RoutedService[], opts: InProcessOptions = {}): Transport {
  const interceptors = opts.interceptors ?? [
    createErrorInterceptor(opts.log ?? createLogger("warn")),
    createValidationInterceptor(),
  ];
  return createRouterTransport(
    (router) => {
      for (const s of services) router.service(s.service, s.impl as never);
    },
    { router: { interceptors }, transport: { useBinaryFormat: true, interceptors: opts.clientInterceptors ?? [] } },
  );
}

/** A generated client of `service` implemented by `impl` in this process (see {@link createInProcessTransport}). */
export function createInProcessClient<S extends DescService>(
  service: S,
  impl: unknown,
  opts: InProcessOptions = {},
): Client<S> {
  return createClient(service, createInProcessTransport([{ service, impl }], opts));
}
