/**
 * grpc.health.v1.Health: Check, Watch and List, per service and overall (the empty name). The
 * server marks everything NOT_SERVING when it starts draining; peer breaker states are exposed as
 * `mesh.peer.<server>` so a probe or an SRE sees which targets a server currently cannot reach.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  type Health,
  type HealthCheckResponse,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as Status,
} from "../../gen/grpc/health/v1/health_pb.ts";

/** Health status of one service name. */
export type ServingStatus = "SERVING" | "NOT_SERVING";

/** The health registry behind the Health service. */
export interface HealthRegistry {
  /** Sets a service's status; the empty name is the server as a whole. */
  set(service: string, status: ServingStatus): void;
  /** Current status of a service, or undefined when unknown. */
  get(service: string): ServingStatus | undefined;
  /** Every known service and its status. */
  all(): Record<string, ServingStatus>;
  /** Marks everything NOT_SERVING and ends every Watch stream after telling it so. */
  shutdown(): void;
  /** The Health service implementation. */
  readonly service: ServiceImpl<typeof Health>;
}

const toProto = (s: ServingStatus | undefined): HealthCheckResponse =>
  create(HealthCheckResponseSchema, {
    status: s === undefined ? Status.SERVICE_UNKNOWN : s === "SERVING" ? Status.SERVING : Status.NOT_SERVING,
  });

/** Creates a health registry; `dynamic` supplies statuses computed on demand (peer breakers). */
export function createHealthRegistry(dynamic: () => Record<string, ServingStatus> = () => ({})): HealthRegistry {
  const statuses = new Map<string, ServingStatus>();
  const watchers = new Set<() => void>();
  let draining = false;
  const notify = (): void => {
    for (const w of watchers) w();
  };
  const get = (service: string): ServingStatus | undefined => {
    if (draining) return statuses.has(service) || service in dynamic() ? "NOT_SERVING" : undefined;
    return statuses.get(service) ?? dynamic()[service];
  };
  const registry: HealthRegistry = {
    set(service, status) {
      if (draining) return;
      if (statuses.get(service) === status) return;
      statuses.set(service, status);
      notify();
    },
    get,
    all() {
      const out: Record<string, ServingStatus> = {};
      for (const name of [...statuses.keys(), ...Object.keys(dynamic())]) {
        const s = get(name);
        if (s !== undefined) out[name] = s;
      }
      return out;
    },
    shutdown() {
      draining = true;
      notify();
    },
    service: {
      check(req) {
        const s = get(req.service);
        if (s === undefined) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
        return toProto(s);
      },
      list() {
        const statusesOut: Record<string, HealthCheckResponse> = {};
        for (const [k, v] of Object.entries(registry.all())) statusesOut[k] = toProto(v);
        return { statuses: statusesOut };
      },
      async *watch(req, ctx) {
        let wake: () => void = () => {};
        const changed = (): void => wake();
        watchers.add(changed);
        try {
          let last: ServingStatus | undefined | null = null;
          for (;;) {
            const now = get(req.service);
            if (now !== last) {
              last = now;
              yield toProto(now);
            }
            if (draining || ctx.signal.aborted) return;
            // Dynamic statuses (breakers) change without a set(): poll them every second.
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, 1000);
              wake = () => {
                clearTimeout(timer);
                resolve();
              };
              ctx.signal.addEventListener("abort", wake, { once: true });
            });
          }
        } finally {
          watchers.delete(changed);
        }
      },
    },
  };
  return registry;
}
