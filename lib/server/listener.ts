/**
 * One port for HTTP/2 and HTTP/1.1. Without TLS, the first bytes of a connection decide: the
 * HTTP/2 preface goes to the HTTP/2 server (gRPC, Connect, gRPC-Web over h2c), anything else to the
 * HTTP/1.1 server (Connect and gRPC-Web over HTTP/1.1, agent cards for curl). With TLS, ALPN does
 * the same. Tracks sessions so a drain can send GOAWAY and wait.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";

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

const preface = Buffer.from("PRI * HTTP/2.0");

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
export function listen(handler: Handler, host: string, port: number, tls: ListenTls | undefined): Promise<Listener> {
  const sessions = new Set<http2.Http2Session>();
  const sockets = new Set<net.Socket>();
  const h2opts: http2.ServerOptions = { settings: { maxConcurrentStreams: 1000 } };
  let front: net.Server;
  let h1: http.Server | undefined;
  if (tls) {
    const secure = http2.createSecureServer(
      {
        ...h2opts,
        allowHTTP1: true,
        ca: readFileSync(tls.ca),
        cert: readFileSync(tls.cert),
        key: readFileSync(tls.key),
      },
      handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
    );
    secure.on("session", (s) => {
      sessions.add(s);
      s.once("close", () => sessions.delete(s));
    });
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
    h2.on("session", (s) => {
      sessions.add(s);
      s.once("close", () => sessions.delete(s));
    });
    const h1server = http.createServer(handler as http.RequestListener);
    h1server.keepAliveTimeout = 5000;
    h1 = h1server;
    front = net.createServer((socket) => {
      sockets.add(socket);
      socket.once("close", () => sockets.delete(socket));
      socket.once("data", (chunk: Buffer) => {
        socket.pause();
        socket.unshift(chunk);
        if (chunk.subarray(0, preface.length).equals(preface.subarray(0, Math.min(chunk.length, preface.length)))) {
          // The HTTP/2 session reads what is already buffered itself.
          h2.emit("connection", socket);
        } else {
          h1server.emit("connection", socket);
          socket.resume();
        }
      });
    });
  }
  front.on("connection", (s: net.Socket) => s.setNoDelay(true));
  return new Promise((resolve, reject) => {
    const failed = (err: Error): void => reject(new ListenError(host, port, err));
    front.once("error", failed);
    front.listen(port, host, () => {
      front.off("error", failed);
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
        },
      });
    });
  });
}
