/**
 * Caching and clocks for replicated data: hybrid logical clocks, and local read caches that
 * events invalidate on every server.
 */
export {
  ClockDriftError,
  type ClockOptions,
  compareHlc,
  createClock,
  DEFAULT_MAX_DRIFT_MS,
  decodeHlc,
  encodeHlc,
  formatHlc,
  type Hlc,
  type HlcFields,
  type HybridClock,
  hlcFromProto,
  hlcMessage,
  hlcToProto,
  maxHlc,
} from "./hlc.ts";
export { claimNodeId, type NodeIdClaim, type NodeIdOptions } from "./node-id.ts";
export {
  CacheInvalidatedEvent,
  createReplicatedCache,
  enqueueInvalidation,
  type InvalidationInfo,
  type Loaded,
  type ReplicatedCache,
  type ReplicatedCacheOptions,
  type ReplicatedCacheStats,
} from "./replicated.ts";
