/**
 * Raw HTTP/2 calls for the fuzz suite: a request body exactly as a case builds it (malformed bytes
 * included) sent over Connect (unary or streaming envelopes), or gRPC, and the answer reduced to
 * one outcome — `ok`, a status code name (`invalid_argument`), or what went wrong on the wire
 * (`hang`, `reset`, `http_<status>`, `no_status`). Typed clients cannot send what a fuzzer needs
 * to send, so this speaks the protocols directly.
 */
import http2 from "node:http2";
import { Code } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";

/** How a body travels: Connect with JSON or binary, gRPC with binary or its JSON codec. */
export type WireTransport = "connect-json" | "connect-proto" | "grpc-proto" | "grpc-json";

/** Every transport, in report order. */
export const wireTransports: readonly WireTransport[] = ["connect-json", "connect-proto", "grpc-proto", "grpc-json"];

/** One request, as raw as a case needs it. */
export interface WireRequest {
  /** `http://127.0.0.1:port`. */
  baseUrl: string;
  /** `/pkg.Service/Method`. */
  path: string;
  transport: WireTransport;
  /** Whether the method streams (Connect then uses its enveloped streaming protocol). */
  streaming: boolean;
  /** The message: JSON text or protobuf bytes, unframed. */
  payload: Uint8Array;
  /** Replaces the whole HTTP body (framing included), for framing-level cases. */
  rawBody?: Uint8Array;
  /** Flags of the envelope around `payload` (enveloped protocols only; bit 0 = compressed). */
  envelopeFlags?: number;
  /** Extra or replacing headers (`authorization` among them; omit it for an anonymous call). */
  headers?: Record<string, string>;
  /** Gives up after this long and reports `hang`. */
  timeoutMs: number;
  /**
   * Sends on a connection of its own, closed afterwards, so what the request does to its
   * connection (an oversized body the server stops reading) does not reach other requests.
   */
  isolate?: boolean;
}

/** What a call came to. */
export interface WireOutcome {
  /** `ok`, a Connect code string (`invalid_argument`), or `hang` / `reset` / `http_<n>` / `no_status`. */
  code: string;
  /** The error message (or why the outcome is what it is), cut to 300 characters. */
  message: string;
  /** Bytes of the answer read until the outcome was known. */
  answerBytes: number;
}

/** A gRPC / Connect-streaming envelope: flags, big-endian length, data. */
export function envelope(flags: number, data: Uint8Array, declaredLength = data.byteLength): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(declaredLength >>> 0, 1);
  return Buffer.concat([head, data]);
}

function contentType(t: WireTransport, streaming: boolean): string {
  switch (t) {
    case "connect-json":
      return streaming ? "application/connect+json" : "application/json";
    case "connect-proto":
      return streaming ? "application/connect+proto" : "application/proto";
    case "grpc-proto":
      return "application/grpc+proto";
    case "grpc-json":
      return "application/grpc+json";
  }
}

/** Whether `t` frames the body in envelopes for a method of this kind. */
export function enveloped(t: WireTransport, streaming: boolean): boolean {
  return t.startsWith("grpc") || streaming;
}

/** HTTP/2 RST_STREAM codes as gRPC's HTTP/2 protocol (and connect-node) map them to statuses. */
const resetCodes: Readonly<Record<number, string>> = {
  [http2.constants.NGHTTP2_REFUSED_STREAM]: "unavailable",
  [http2.constants.NGHTTP2_CANCEL]: "canceled",
  [http2.constants.NGHTTP2_ENHANCE_YOUR_CALM]: "resource_exhausted",
  [http2.constants.NGHTTP2_INADEQUATE_SECURITY]: "permission_denied",
};

const sessions = new Map<string, http2.ClientHttp2Session>();

function session(baseUrl: string): http2.ClientHttp2Session {
  const s = sessions.get(baseUrl);
  if (s !== undefined && !s.closed && !s.destroyed) return s;
  // Large bodies queue up on the client side: let them (the default of 10 MB refuses new streams).
  const fresh = http2.connect(baseUrl, { maxSessionMemory: 1024 });
  // A broken session is replaced on the next call; its error surfaces on the streams.
  fresh.on("error", () => sessions.delete(baseUrl));
  fresh.on("close", () => {
    if (sessions.get(baseUrl) === fresh) sessions.delete(baseUrl);
  });
  sessions.set(baseUrl, fresh);
  return fresh;
}

/** Closes every cached HTTP/2 session. */
export function closeSessions(): void {
  for (const s of sessions.values()) s.destroy();
  sessions.clear();
}

const cut = (s: string) => (s.length > 300 ? `${s.slice(0, 300)}…` : s);

function grpcCode(status: unknown): string | undefined {
  if (status === undefined) return undefined;
  const n = Number(status);
  if (!Number.isInteger(n)) return `bad_grpc_status_${String(status)}`;
  return n === 0 ? "ok" : n in Code ? codeToString(n as Code) : `grpc_${n}`;
}

/** The Connect error of a JSON error body, or undefined when it is not one. */
function connectErrorBody(body: Buffer): { code: string; message: string } | undefined {
  try {
    const v = JSON.parse(body.toString("utf8")) as { code?: unknown; message?: unknown };
    if (typeof v.code !== "string") return undefined;
    return { code: v.code, message: typeof v.message === "string" ? v.message : "" };
  } catch {
    return undefined;
  }
}

/**
 * Sends one request on a (cached) HTTP/2 session and resolves with its outcome as soon as it is
 * known: a streaming answer counts as `ok` at its first message, and the stream is then cancelled.
 */
export function send(r: WireRequest): Promise<WireOutcome> {
  const env = enveloped(r.transport, r.streaming);
  const body = r.rawBody ?? (env ? envelope(r.envelopeFlags ?? 0, r.payload) : Buffer.from(r.payload));
  const grpc = r.transport.startsWith("grpc");
  return new Promise<WireOutcome>((resolve) => {
    let done = false;
    let reset = false;
    let stream: http2.ClientHttp2Stream | undefined;
    const own = r.isolate ? http2.connect(r.baseUrl, { maxSessionMemory: 1024 }) : undefined;
    own?.on("error", () => undefined);
    let answerBytes = 0;
    const finish = (code: string, message: string, cancel = false) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      // Cancel only what would go on — a stream past its first message, a hang, a body the server
      // answered before reading it all (as a client gives up its upload then) — not every stream:
      // a client that resets every stream is treated as a rapid-reset attack (ENHANCE_YOUR_CALM).
      const unsent = stream !== undefined && !stream.writableFinished;
      if ((cancel || unsent) && stream !== undefined && !stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
      else stream?.resume();
      // A reset stream may leave its connection refusing streams: later requests get a new one.
      if (own !== undefined) own.destroy();
      else if (reset) sessions.get(r.baseUrl)?.destroy();
      resolve({ code, message: cut(message), answerBytes });
    };
    const timer = setTimeout(() => finish("hang", `no answer within ${r.timeoutMs} ms`, true), r.timeoutMs);
    try {
      stream = (own ?? session(r.baseUrl)).request({
        ":method": "POST",
        ":path": r.path,
        "content-type": contentType(r.transport, r.streaming),
        ...(grpc ? { te: "trailers" } : { "connect-protocol-version": "1" }),
        ...r.headers,
      });
    } catch (err) {
      finish("reset", `request failed: ${String(err)}`);
      return;
    }
    let status = 0;
    let headers: http2.IncomingHttpHeaders = {};
    let buffered = Buffer.alloc(0);
    const chunks: Buffer[] = [];
    stream.on("response", (h) => {
      headers = h;
      status = Number(h[":status"]);
      // gRPC trailers-only answer.
      if (grpc && h["grpc-status"] !== undefined) {
        finish(grpcCode(h["grpc-status"]) ?? "no_status", decodeURIComponent(String(h["grpc-message"] ?? "")));
      }
    });
    stream.on("data", (c: Buffer) => {
      answerBytes += c.byteLength;
      if (!env || status !== 200) {
        if (answerBytes <= 1 << 20) chunks.push(c);
        return;
      }
      buffered = Buffer.concat([buffered, c]);
      // Enveloped answers: the first complete envelope decides.
      while (buffered.byteLength >= 5) {
        const flags = buffered[0] as number;
        const len = buffered.readUInt32BE(1);
        if (buffered.byteLength < 5 + len) return;
        const data = buffered.subarray(5, 5 + len);
        buffered = buffered.subarray(5 + len);
        if (!grpc && (flags & 0x02) !== 0) {
          // Connect end-of-stream message: `{}` or `{"error": {...}}`.
          const e = (() => {
            try {
              return (JSON.parse(data.toString("utf8")) as { error?: { code?: string; message?: string } }).error;
            } catch {
              return { code: "bad_end_stream", message: data.toString("utf8").slice(0, 100) };
            }
          })();
          finish(e?.code ?? "ok", e?.message ?? "");
          return;
        }
        finish("ok", "answered a message", r.streaming);
        return;
      }
    });
    stream.on("trailers", (t) => {
      if (grpc) finish(grpcCode(t["grpc-status"]) ?? "no_status", decodeURIComponent(String(t["grpc-message"] ?? "")));
    });
    stream.on("end", () => {
      if (grpc) {
        finish("no_status", `gRPC answer ended without grpc-status (HTTP ${status})`);
        return;
      }
      const text = Buffer.concat(chunks);
      if (status === 200 && !env) {
        finish("ok", "answered a message");
        return;
      }
      const e = connectErrorBody(text);
      if (e !== undefined) finish(e.code, e.message);
      else finish(`http_${status}`, `${String(headers["content-type"] ?? "")} ${text.toString("utf8", 0, 200)}`);
    });
    stream.on("error", (err) => {
      // A reset stream reads as the status gRPC's HTTP/2 mapping (and connect-node) gives its code.
      const rst = stream?.rstCode;
      const code = rst === undefined ? undefined : resetCodes[rst];
      reset = true;
      finish(code ?? "reset", `stream reset before an answer (${String(err)})`);
    });
    stream.on("close", () => {
      reset = true;
      finish("reset", `stream closed before an answer (rst code ${stream?.rstCode})`);
    });
    // Large bodies: the server may answer (and reset) before it has read all of it.
    stream.end(body);
  });
}
