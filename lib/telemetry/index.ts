/** OpenTelemetry: the SDK wired once per process, and RPC tracing interceptors that measure handoffs. */
export {
  attemptKey,
  type ClientTracingOptions,
  codeName,
  createClientTracingInterceptor,
  createServerTracingInterceptor,
  handoffAttributes,
  protocolOf,
  type ServerTracingOptions,
} from "./rpc.ts";
export { setupTelemetry, type Telemetry, type TelemetryOptions } from "./sdk.ts";
