/**
 * One port for HTTP/2 and HTTP/1.1. Without TLS, the first bytes of a connection decide: the
 * HTTP/2 preface goes to the HTTP/2 server (gRPC, Connect, gRPC-Web over h2c), anything else to the
 * HTTP/1.1 server (Connect and gRPC-Web over HTTP/1.1, agent cards for curl). With TLS, ALPN does
 * the same. Tracks sessions so a drain can send GOAWAY and wait.
 *
 * Slow or silent clients cannot hold connections: a connection must send its first bytes (or finish
 * its TLS handshake) and an HTTP/2 client its preface and SETTINGS within the headers timeout; an
 * HTTP/1.1 request its headers within the headers timeout and all of it within the request timeout
 * (Node's headersTimeout / requestTimeout); an HTTP/2 request body must end within the request
 * timeout; an HTTP/2 session with no open stream is closed after the idle timeout. Responses are
 * never timed out: a server stream (WatchRun, BuildSite) may stay quiet for as long as it needs.
 * Connections over the per-address or global cap are closed as soon as they are accepted.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";

/**
 * The host and port a server binds for its URL (`http(s)://host:port`): `listenHost` overrides the
 * host; URL drops a scheme's default port (http://h:80 has port "") and brackets IPv6 hosts.
 */
export function listenAddress(serverUrl: string, listenHost: string | undefined): { host: string; port: number } {
  const url = new URL(serverUrl);
  return {
    host: listenHost ?? url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: Number(url.port || (url.protocol === "https:" ? 443 : 80)),
  };
}

/** Request handler for both HTTP versions. */
export type Handler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

/** A listening port. */
export interface Listener {
  /** Bound port. */
  port: number;
  /** Stops accepting; asks HTTP/2 peers to go away (GOAWAY) and closes idle HTTP/1.1 connections. */
  stopAccepting(): void;
  /** Destroys every remaining connection. */
  destroy(): void;
}

/** TLS files. */
export interface ListenTls {
  /** CA PEM path. */
  ca: string;
  /** Certificate PEM path. */
  cert: string;
  /** Key PEM path. */
  key: string;
}

/** Timeouts and connection caps of a listening port (MESH_HTTP_* and MESH_MAX_CONNECTIONS*). */
export interface ListenLimits {
  /** Time for a new connection's first bytes / TLS handshake / HTTP/2 preface and SETTINGS, and for a request's headers. */
  headersTimeoutMs: number;
  /** Time for a whole request (headers and body) to arrive. */
  requestTimeoutMs: number;
  /** An HTTP/2 session without open streams is closed after this long without traffic; HTTP/1.1 keep-alive waits min(this, 5 s). */
  idleTimeoutMs: number;
  /** Concurrent connections per remote address. */
  maxConnectionsPerAddress: number;
  /** Concurrent connections in all. */
  maxConnections: number;
}

/** Defaults of {@link ListenLimits}, the same as the configuration's. */
export const defaultListenLimits: Readonly<ListenLimits> = Object.freeze({
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 300_000,
  idleTimeoutMs: 120_000,
  maxConnectionsPerAddress: 256,
  maxConnections: 10_000,
});

const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * The port could not be bound (EADDRINUSE, EACCES, EADDRNOTAVAIL, an unresolvable host…). Typed, and
 * named "ListenError", so the composition root can tell a start-up failure the operator must fix from
 * a crash and name the setting to change; `code` is Node's error code, the original error the `cause`.
 */
export class ListenError extends Error {
  override name = "ListenError";
  /** Node's error code, such as `EADDRINUSE`. */
  readonly code: string;
  /** Host that was to be bound. */
  readonly host: string;
  /** Port that was to be bound. */
  readonly port: number;

  /** Wraps the error `net.Server#listen` emitted for host:port. */
  constructor(host: string, port: number, cause: unknown) {
    const code = (cause as NodeJS.ErrnoException | undefined)?.code ?? "EUNKNOWN";
    super(`cannot listen on ${host}:${port}: ${code}`, { cause });
    this.code = code;
    this.host = host;
    this.port = port;
  }
}

/**
 * Listens on host:port (0 = any free port) and serves `handler` over HTTP/2 and HTTP/1.1; rejects
 * with a {@link ListenError} when the port cannot be bound.
 */
export function listen(
  handler: Handler,
  host: string,
  port: number,
  tls: ListenTls | undefined,
  limits: ListenLimits = defaultListenLimits,
): Promise<Listener> {
  const sessions = new Set<http2.Http2Session>();
  const sockets = new Set<net.Socket>();
  const perAddress = new Map<string, number>();
  const headersTimeoutMs = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs);
  const h2opts: http2.ServerOptions = { settings: { maxConcurrentStreams: 1000 } };
  // Node checks HTTP/1.1 header and request timeouts on an interval; check often enough to honour them.
  const checkEveryMs = Math.max(25, Math.min(30_000, Math.floor(headersTimeoutMs / 4)));
  // (Http2SecureServer with allowHTTP1 has and honours these too; the types lack them, and the
  // checking interval, an option of http.createServer, is also a property Node reads on 'listening'.)
  const h1limits = (
    s: Pick<http.Server, "headersTimeout" | "requestTimeout" | "keepAliveTimeout"> & {
      connectionsCheckingInterval?: number;
    },
  ): void => {
    s.headersTimeout = headersTimeoutMs;
    s.requestTimeout = limits.requestTimeoutMs;
    s.keepAliveTimeout = Math.min(5000, limits.idleTimeoutMs);
    s.connectionsCheckingInterval = checkEveryMs;
  };
  // Counts connections per remote address; closes one over the cap at once.
  const admit = (socket: net.Socket): boolean => {
    const addr = socket.remoteAddress;
    const n = addr === undefined ? 0 : (perAddress.get(addr) ?? 0);
    if (addr === undefined || n >= limits.maxConnectionsPerAddress) {
      socket.destroy();
      return false;
    }
    perAddress.set(addr, n + 1);
    sockets.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      const left = (perAddress.get(addr) ?? 1) - 1;
      if (left > 0) perAddress.set(addr, left);
      else perAddress.delete(addr);
    });
    socket.setNoDelay(true);
    return true;
  };
  // HTTP/2 sessions: the client's SETTINGS (right after its preface) must come within the headers
  // timeout; a session with no open stream is closed after the idle timeout. Request bodies must end
  // within the request timeout (a stream whose body stalls is reset); responses are not limited.
  const onSession = (s: http2.Http2Session): void => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
    const handshake = setTimeout(() => s.destroy(), headersTimeoutMs);
    handshake.unref();
    s.once("remoteSettings", () => clearTimeout(handshake));
    s.once("close", () => clearTimeout(handshake));
    let open = 0;
    s.on("stream", (stream: http2.ServerHttp2Stream) => {
      open++;
      stream.once("close", () => {
        // Idle time counts from the last stream's end.
        if (--open === 0 && !s.closed && !s.destroyed) s.setTimeout(limits.idleTimeoutMs);
      });
    });
    s.on("timeout", () => {
      if (open > 0 || s.closed || s.destroyed) return;
      s.close();
      setTimeout(() => s.destroy(), 1000).unref();
    });
    s.setTimeout(limits.idleTimeoutMs);
  };
  const onStream = (stream: http2.ServerHttp2Stream): void => {
    if (stream.endAfterHeaders) return;
    const timer = setTimeout(() => {
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
    }, limits.requestTimeoutMs);
    timer.unref();
    stream.once("end", () => clearTimeout(timer));
    stream.once("close", () => clearTimeout(timer));
  };
  let front: net.Server;
  let h1: http.Server | undefined;
  if (tls) {
    const secure = http2.createSecureServer(
      {
        ...h2opts,
        allowHTTP1: true,
        // The TLS handshake (the client's first bytes) must finish within the headers timeout.
        handshakeTimeout: headersTimeoutMs,
        ca: readFileSync(tls.ca),
        cert: readFileSync(tls.cert),
        key: readFileSync(tls.key),
      },
      handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
    );
    h1limits(secure as unknown as http.Server);
    secure.on("session", onSession);
    secure.on("stream", onStream);
    secure.on("connection", admit);
    secure.on("secureConnection", (s) => {
      sockets.add(s);
      s.once("close", () => sockets.delete(s));
    });
    front = secure;
  } else {
    const h2 = http2.createServer(
      h2opts,
      handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
    );
    h2.on("session", onSession);
    h2.on("stream", onStream);
    const h1server = http.createServer(handler as http.RequestListener);
    h1limits(h1server);
    h1 = h1server;
    front = net.createServer((socket) => {
      if (!admit(socket)) return;
      // The first bytes decide the protocol; a connection that sends none is closed.
      const silent = (): void => {
        socket.destroy();
      };
      socket.setTimeout(headersTimeoutMs);
      socket.once("timeout", silent);
      socket.once("data", (chunk: Buffer) => {
        socket.setTimeout(0);
        socket.off("timeout", silent);
        socket.pause();
        socket.unshift(chunk);
        if (chunk.subarray(0, preface.length).equals(preface.subarray(0, Math.min(chunk.length, preface.length)))) {
          // The HTTP/2 session reads what is already buffered itself (and times out an incomplete preface).
          h2.emit("connection", socket);
        } else {
          h1server.emit("connection", socket);
          socket.resume();
        }
      });
    });
  }
  front.maxConnections = limits.maxConnections;
  return new Promise((resolve, reject) => {
    const failed = (err: Error): void => reject(new ListenError(host, port, err));
    front.once("error", failed);
    front.listen(port, host, () => {
      front.off("error", failed);
      // The HTTP/1.1 server never listens itself (the front hands it sockets): start the interval
      // that enforces its header and request timeouts as `listen` would.
      h1?.emit("listening");
      const addr = front.address() as net.AddressInfo;
      resolve({
        port: addr.port,
        stopAccepting() {
          front.close();
          for (const s of sessions) s.close();
          h1?.closeIdleConnections();
          if (h1) h1.on("request", (_req, res: http.ServerResponse) => res.setHeader("connection", "close"));
        },
        destroy() {
          for (const s of sessions) s.destroy();
          for (const s of sockets) s.destroy();
          h1?.closeAllConnections();
          h1?.close();
        },
      });
    });
  });
}
