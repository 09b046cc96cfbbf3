/**
 * Keeps the embedded services up. A service this process started is restarted when its process
 * dies unexpectedly, on the same port and data directory, with exponential backoff; a service
 * reused from another process (an earlier `npm start`, a lone server sharing the data directory)
 * belongs to that process: it is only watched, and reported when it stops or starts answering.
 *
 * Every death, failed restart and return is logged; restarts are also counted in the
 * `mesh.infra.restarts` OpenTelemetry counter (exported where a meter provider is registered).
 */
import { metrics } from "@opentelemetry/api";
import type { Logger } from "../log/index.ts";

/** How a process ended: its exit code, or the signal that ended it. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One run of an embedded service: a process that answers on the service's port. */
export interface ServiceRun {
  /** Process id. */
  readonly pid: number;
  /** Settles (never rejects) once the process has exited. */
  readonly exited: Promise<ProcessExit>;
  /** Stops the process cleanly, escalating to SIGKILL; resolves once it is gone. Idempotent. */
  stop(): Promise<void>;
}

/** Restart and watch timing of the embedded services. */
export interface RestartPolicy {
  /** Delay before the first restart (default 500 ms); doubles with each consecutive failure. */
  baseDelayMs?: number;
  /** Longest delay between restart attempts (default 30 s). */
  maxDelayMs?: number;
  /** A run that stayed up at least this long counts as healthy: its death restarts from the base delay (default 60 s). */
  stableAfterMs?: number;
  /** How often a service reused from another process is probed (default 5 s). */
  probeIntervalMs?: number;
}

/** Name of an embedded service, as logs and {@link EmbeddedServiceStatus} spell it. */
export type EmbeddedServiceName = "postgres" | "nats-server";

/** What is known about one embedded service. */
export interface EmbeddedServiceStatus {
  service: EmbeddedServiceName;
  /** Port on 127.0.0.1. */
  port: number;
  /** started: this process runs and restarts it; reused: another process does, this one only watches it. */
  owner: "started" | "reused";
  /**
   * running: up (for a reused one: answered the last probe); restarting: died, waiting for or in a
   * restart; down: a reused one that stopped answering; stopped: stop() was called.
   */
  state: "running" | "restarting" | "down" | "stopped";
  /** Process id of the current run, when this process started it and it is running. */
  pid?: number;
  /** Restarts that brought the service back since it was first started. */
  restarts: number;
}

/** A supervised (or watched) service. */
export interface SupervisedService {
  status(): EmbeddedServiceStatus;
  /** Ends supervision; stops the process if this one started it (never restarting it). Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@link superviseService}. */
export interface SuperviseServiceOptions {
  service: EmbeddedServiceName;
  port: number;
  log: Logger;
  /** The run started when the infrastructure was resolved. */
  first: ServiceRun;
  /**
   * Starts the service again on the same port and data directory; resolves once it answers. On
   * failure it leaves no process behind. `deadPid` is the pid of the run that died last.
   */
  start(deadPid: number): Promise<ServiceRun>;
  /** Whether this data directory's service answers on the port (run by whichever process). */
  answers(): Promise<boolean>;
  policy?: RestartPolicy | undefined;
}

const defaults: Required<RestartPolicy> = {
  baseDelayMs: 500,
  maxDelayMs: 30_000,
  stableAfterMs: 60_000,
  probeIntervalMs: 5_000,
};

/** Consecutive failed probes after which a reused service counts as down (one may be a timeout under load). */
const downAfterProbes = 2;

/**
 * Watches a run this process started and restarts the service whenever its process dies without
 * stop() having been called: the n-th consecutive attempt waits `baseDelayMs · 2^(n-1)`, capped at
 * `maxDelayMs`; a run that had stayed up `stableAfterMs` resets n. If a restart fails because
 * another process sharing the data directory brought the service back meanwhile, it is watched
 * like a reused one from then on.
 */
export function superviseService(opts: SuperviseServiceOptions): SupervisedService {
  const { service, port, log } = opts;
  const policy = { ...defaults, ...opts.policy };
  let current: ServiceRun | undefined = opts.first;
  let state: EmbeddedServiceStatus["state"] = "running";
  let restarts = 0;
  /** Consecutive restart attempts since the service was last healthy. */
  let attempt = 0;
  let timer: NodeJS.Timeout | undefined;
  /** A restart in progress; stop() waits for it so its process is not left behind. */
  let starting: Promise<void> | undefined;
  let watcher: SupervisedService | undefined;
  let stopped = false;
  let stopping: Promise<void> | undefined;

  const delay = (): number => Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(attempt - 1, 30));

  const watch = (run: ServiceRun, startedAt: number): void => {
    void run.exited.then((exit) => {
      if (stopped || current !== run) return;
      const ranForMs = Date.now() - startedAt;
      current = undefined;
      state = "restarting";
      attempt = ranForMs >= policy.stableAfterMs ? 1 : attempt + 1;
      const inMs = delay();
      log.error(`embedded ${service} exited unexpectedly`, {
        pid: run.pid,
        ...describeExit(exit),
        ranForMs,
        port,
        restartInMs: inMs,
      });
      schedule(run.pid, Date.now(), inMs);
    });
  };

  const schedule = (deadPid: number, downSince: number, inMs: number): void => {
    timer = setTimeout(() => {
      timer = undefined;
      if (stopped) return;
      starting = restart(deadPid, downSince)
        .catch((err: unknown) => {
          // Only a failing stop() of a run that came up after stop() was called gets here.
          log.error(`embedded ${service} could not be stopped after a restart`, { port, reason: message(err) });
        })
        .finally(() => {
          starting = undefined;
        });
    }, inMs);
    timer.unref();
  };

  const restart = async (deadPid: number, downSince: number): Promise<void> => {
    let run: ServiceRun;
    try {
      run = await opts.start(deadPid);
    } catch (err) {
      if (stopped) return;
      const takenOver = await opts.answers().catch(() => false);
      if (stopped) return;
      if (takenOver) {
        log.warn(`embedded ${service} was started again by another process; watching it instead of restarting it`, {
          port,
          reason: message(err),
        });
        state = "running";
        watcher = watchService({ service, port, log, answers: opts.answers, policy: opts.policy });
        return;
      }
      attempt += 1;
      const inMs = delay();
      log.error(`embedded ${service} failed to restart`, {
        attempt: attempt - 1,
        port,
        reason: message(err),
        restartInMs: inMs,
      });
      schedule(deadPid, downSince, inMs);
      return;
    }
    if (stopped) {
      // stop() came while this run was starting; it waits for this promise, so end the run here.
      await run.stop();
      return;
    }
    restarts += 1;
    current = run;
    state = "running";
    metrics
      .getMeter("marketing-mesh/infra")
      .createCounter("mesh.infra.restarts", { description: "Restarts of embedded services after they died." })
      .add(1, { service });
    log.info(`embedded ${service} is back`, { pid: run.pid, port, downForMs: Date.now() - downSince, restarts });
    watch(run, Date.now());
  };

  watch(opts.first, Date.now());
  return {
    status: () => {
      const watched = watcher?.status();
      const owner = watched === undefined ? "started" : "reused";
      const s: EmbeddedServiceStatus = { service, port, owner, state: watched?.state ?? state, restarts };
      if (current !== undefined && state === "running") s.pid = current.pid;
      return s;
    },
    stop: () => {
      stopping ??= (async () => {
        stopped = true;
        state = "stopped";
        clearTimeout(timer);
        await starting;
        await watcher?.stop();
        const run = current;
        current = undefined;
        await run?.stop();
      })();
      return stopping;
    },
  };
}

/** Options of {@link watchService}. */
export interface WatchServiceOptions {
  service: EmbeddedServiceName;
  port: number;
  log: Logger;
  /** Whether the service answers on its port. */
  answers(): Promise<boolean>;
  policy?: RestartPolicy | undefined;
}

/**
 * Watches a service another process runs: probes it every `probeIntervalMs` and logs (error) when
 * it stops answering and (info) when it answers again. It is never restarted from here: its owner
 * restarts it, and if the owner is gone, restarting `npm start` starts a new one.
 */
export function watchService(opts: WatchServiceOptions): SupervisedService {
  const { service, port, log } = opts;
  const { probeIntervalMs } = { ...defaults, ...opts.policy };
  let state: EmbeddedServiceStatus["state"] = "running";
  let failures = 0;
  let timer: NodeJS.Timeout | undefined;
  let probing: Promise<void> | undefined;
  let stopped = false;

  const probe = async (): Promise<void> => {
    const up = await opts.answers().catch(() => false);
    if (stopped) return;
    if (up) {
      failures = 0;
      if (state === "down") {
        state = "running";
        log.info(`embedded ${service} (run by another process) answers again`, { port });
      }
    } else if (++failures === downAfterProbes && state === "running") {
      state = "down";
      log.error(`embedded ${service} (run by another process) stopped answering; not restarting it here`, {
        port,
        hint: "its owner restarts it; if that process is gone, restart npm start to start a new one",
      });
    }
  };
  const next = (): void => {
    timer = setTimeout(() => {
      probing = probe().finally(() => {
        probing = undefined;
        if (!stopped) next();
      });
    }, probeIntervalMs);
    timer.unref();
  };
  next();
  return {
    status: () => ({ service, port, owner: "reused", state, restarts: 0 }),
    stop: async () => {
      stopped = true;
      state = "stopped";
      clearTimeout(timer);
      await probing;
    },
  };
}

/** `{ code }` or `{ signal }` of an exit, for log fields. */
export function describeExit(exit: ProcessExit): { code: number } | { signal: string } {
  return exit.signal !== null ? { signal: exit.signal } : { code: exit.code ?? -1 };
}

/** The gist of an error for a log line: its first line and, when it quotes more (a log tail), its last. */
function message(err: unknown): string {
  const lines = (err instanceof Error ? err.message : String(err)).split("\n").filter((l) => l.trim() !== "");
  const first = lines[0] ?? "";
  const last = lines.at(-1);
  return lines.length > 1 && last !== undefined ? `${first} … ${last.trim()}` : first;
}
