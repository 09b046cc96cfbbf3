/**
 * The mesh server and the module contract: a server hosts the modules placed on it (agents and the
 * products placed with them) on one port serving Connect, gRPC and gRPC-Web, with the registry,
 * health, reflection, agent cards, the interceptors every call passes, and a graceful drain.
 */
export {
  type AgentDefinition,
  type AgentDeps,
  type AgentModule,
  type CallContext,
  completeService,
  defineAgent,
  defineModule,
  type EverywhereDeps,
  type EverywhereParts,
  type HostedService,
  type MeshModule,
  type ModuleData,
  type ModuleParts,
  type PartialServiceImpl,
  type RetryPolicySource,
} from "./agent.ts";
export { type Backbone, composeDomains, domainOf, openBackbone } from "./backbone.ts";
export type { HttpRequest, HttpResponse, HttpRoute } from "./http.ts";
export { IDEMPOTENCY_HEADER } from "./idempotency.ts";
export {
  createInProcessClient,
  createInProcessTransport,
  type InProcessOptions,
  type RoutedService,
} from "./in-process.ts";
export { createErrorInterceptor, principalKey } from "./interceptors.ts";
export { ListenError, listenAddress } from "./listener.ts";
export { CallRefusedEvent } from "./refusals.ts";
export { type MeshServer, type MeshServerOptions, startMeshServer } from "./server.ts";
export { createTokenBuckets, type TokenBucketOptions, type TokenBuckets } from "./token-bucket.ts";
