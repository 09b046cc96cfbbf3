/**
 * Requests whose body cannot be decoded answer INVALID_ARGUMENT, never INTERNAL.
 *
 * connect-es decodes a request before the interceptors run for unary RPCs (Connect, gRPC and
 * gRPC-Web alike), and reports a body that is not valid protobuf (`parse binary: …`) or a gRPC
 * message flagged as compressed without a `grpc-encoding` as INTERNAL. The binary deserializer has
 * no hook (`binaryOptions` only reaches protobuf-es' reader), so {@link meshNodeAdapter} wraps the
 * router's universal handlers instead and rewrites exactly those two errors in the answer (a
 * Connect error body, gRPC trailers or the gRPC-Web trailer frame), only when one occurred: the
 * happy path pays nothing. Every other INTERNAL that reaches the wire from there is left alone
 * (our error interceptor has already replaced the ones it saw with `internal error (ref …)`).
 * Streaming RPCs decode inside the interceptors; the error interceptor maps them with
 * {@link malformedRequest}.
 *
 * JSON is made strict by {@link strictJsonOptions}: unknown fields and enum names are refused (the
 * protobuf-es default, which connect-es turns off), and nesting deeper than {@link maxJsonDepth}
 * is refused before `JSON.parse` or protobuf-es recurse into it.
 */
import type http from "node:http";
import type { DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError, createConnectRouter, createContextValues } from "@connectrpc/connect";
import { createAsyncIterable, type UniversalHandler, type UniversalServerResponse } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorFromJsonBytes, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import {
  type ConnectNodeAdapterOptions,
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import type { Logger } from "../log/index.ts";
import { admissionKey, type RequestMemoryBudget } from "./admission.ts";
import { checkWireTypes } from "./wire-check.ts";

/** Deepest JSON nesting (objects and arrays) a request may have; protobuf-es' binary reader stops at 100 too. */
export const maxJsonDepth = 100;

const undecompressable = "received compressed envelope, but do not know how to decompress";

/** Paths of the fields of `desc` (nested messages included, up to 4 deep) whose type is the enum `enumTypeName`. */
function enumFieldPaths(desc: DescMessage, enumTypeName: string): string[] {
  const out: string[] = [];
  const walk = (m: DescMessage, prefix: string, depth: number, seen: Set<string>): void => {
    for (const f of m.fields) {
      const path = `${prefix}${f.jsonName}`;
      if (f.enum?.typeName === enumTypeName)
        out.push(f.fieldKind === "scalar" || f.fieldKind === "enum" ? path : `${path}[]`);
      const child = f.message;
      if (child && depth < 4 && !seen.has(child.typeName) && !child.typeName.startsWith("google.protobuf.")) {
        walk(
          child,
          `${path}${f.fieldKind === "list" ? "[]" : f.fieldKind === "map" ? "{}" : ""}.`,
          depth + 1,
          new Set([...seen, child.typeName]),
        );
      }
    }
  };
  walk(desc, "", 0, new Set([desc.typeName]));
  return out;
}

/**
 * The INVALID_ARGUMENT a request-decoding failure of connect-es should have been, or undefined
 * when `err` is not one (recognised by code and connect-es' own message, nothing broader). An
 * unknown enum name (protobuf-es names only the enum type) gets the field(s) of that type named.
 */
export function malformedRequest(err: unknown, input: DescMessage): ConnectError | undefined {
  if (!(err instanceof ConnectError)) return undefined;
  const raw = err.rawMessage;
  const inputTypeName = input.typeName;
  if (err.code === Code.InvalidArgument) {
    const m = /^cannot decode enum (\S+) from JSON: /.exec(raw);
    if (m === null || / \(fields? [^)]*\)$/.test(raw)) return undefined;
    const paths = enumFieldPaths(input, m[1] as string).slice(0, 5);
    if (paths.length === 0) return undefined;
    return new ConnectError(
      `${raw.slice(0, 300)} (field${paths.length > 1 ? "s" : ""} ${paths.join(", ")})`,
      Code.InvalidArgument,
    );
  }
  if (
    err.code === Code.Unimplemented &&
    /^protocol error: (missing|received extra) input message for unary method$/.test(raw)
  ) {
    return new ConnectError(
      `a unary call carries exactly one ${inputTypeName} message: ${raw.slice("protocol error: ".length)}`,
      Code.InvalidArgument,
    );
  }
  if (err.code !== Code.Internal) return undefined;
  if (raw === "decompression failed") {
    return new ConnectError("request body is flagged as compressed but does not decompress", Code.InvalidArgument);
  }
  if (raw.startsWith("parse binary: ")) {
    const reason = raw.slice("parse binary: ".length).slice(0, 300);
    return new ConnectError(`request body is not a valid ${inputTypeName} message: ${reason}`, Code.InvalidArgument);
  }
  if (raw === undecompressable) {
    return new ConnectError(
      "request message is flagged as compressed but the request names no encoding (grpc-encoding header)",
      Code.InvalidArgument,
    );
  }
  return undefined;
}

/**
 * `body` with its protobuf checked, before connect-es decodes it, for wire types the request's
 * declaration cannot have (see wire-check.ts): INVALID_ARGUMENT naming the field. A Connect unary
 * body is one message, checked when it has arrived; enveloped bodies (gRPC, gRPC-Web, Connect
 * streaming) are checked message by message as each envelope completes, so streams flow as before.
 * Compressed messages are left to the decoder; framing errors are connect-es' to report.
 */
export function wireCheckedBody(
  body: AsyncIterable<Uint8Array>,
  header: Headers,
  input: DescMessage,
  readMaxBytes: number,
): AsyncIterable<Uint8Array> {
  const type = (header.get("content-type") ?? "").toLowerCase();
  const enveloped = type.startsWith("application/grpc") || type.startsWith("application/connect+");
  const binary = enveloped ? !type.includes("json") : type === "application/proto";
  if (!binary || (!enveloped && (header.has("content-encoding") || header.has("connect-content-encoding")))) {
    return body;
  }
  const fail = (reason: string): never => {
    throw new ConnectError(`request body is not a valid ${input.typeName} message: ${reason}`, Code.InvalidArgument);
  };
  const check = (message: Uint8Array): void => {
    let found: string | undefined;
    try {
      found = checkWireTypes(input, message);
    } catch (err) {
      fail(String((err as Error).message ?? err).slice(0, 300));
    }
    if (found !== undefined) fail(`field ${found} cannot have that wire type`);
  };
  if (!enveloped) {
    return (async function* () {
      const chunks: Uint8Array[] = [];
      for await (const chunk of body) {
        chunks.push(chunk);
        yield chunk;
      }
      check(Buffer.concat(chunks));
    })();
  }
  return (async function* () {
    // Envelopes: a flags byte, a 4-byte length, the message. At most one partial one is held, as
    // the chunks it arrived in; they are joined once it is complete (linear in the body's size).
    let parts: Buffer[] = [];
    let size = 0;
    let need = 5; // bytes that complete the header or the envelope being read
    let inEnvelope = false; // whether `need` is the length of a whole envelope (its header read)
    let passThrough = false; // an envelope over the limit: connect-es refuses it as it arrives
    for await (const chunk of body) {
      if (passThrough) {
        yield chunk;
        continue;
      }
      parts.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      size += chunk.byteLength;
      while (size >= need) {
        const pending = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, size);
        parts = [pending];
        if (!inEnvelope) {
          inEnvelope = true;
          need = 5 + pending.readUInt32BE(1);
          if (need - 5 > readMaxBytes) {
            passThrough = true;
            yield pending;
            parts = [];
            size = 0;
            break;
          }
          continue;
        }
        if (((pending[0] as number) & 0x81) === 0) check(pending.subarray(5, need));
        yield pending.subarray(0, need);
        const rest = pending.subarray(need);
        parts = rest.byteLength > 0 ? [rest] : [];
        size = rest.byteLength;
        need = 5;
        inEnvelope = false;
      }
    }
    if (size > 0) yield Buffer.concat(parts, size);
  })();
}

/** Throws INVALID_ARGUMENT when `json` nests objects/arrays deeper than `limit` (a linear scan, no recursion). */
export function assertJsonDepth(json: string, limit = maxJsonDepth): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) {
        throw new ConnectError(`request JSON nests deeper than ${limit} levels`, Code.InvalidArgument);
      }
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
}

/** Router JSON options: strict reading (unknown fields and enum names refused, UTF-8 checked) and a nesting limit. */
export function strictJsonOptions<T extends object>(
  base: T,
): T & { ignoreUnknownFields: false; textDecoder: { decode(input?: Uint8Array): string } } {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  return {
    ...base,
    ignoreUnknownFields: false,
    textDecoder: {
      decode(input?: Uint8Array): string {
        let text: string;
        try {
          text = decoder.decode(input);
        } catch {
          throw new ConnectError("request JSON is not valid UTF-8", Code.InvalidArgument);
        }
        assertJsonDepth(text);
        return text;
      },
    },
  };
}

type Rewrite = (err: ConnectError) => ConnectError | undefined;

/** Rewrites a Connect unary error body (uncompressed JSON) when `rewrite` maps its error. */
async function rewriteConnectUnary(res: UniversalServerResponse, rewrite: Rewrite): Promise<UniversalServerResponse> {
  if (res.status < 400 || res.header?.has("content-encoding") || res.body === undefined) return res;
  const chunks: Uint8Array[] = [];
  if (res.body instanceof Uint8Array) chunks.push(res.body);
  else for await (const c of res.body) chunks.push(c);
  const bytes = Buffer.concat(chunks);
  let mapped: ConnectError | undefined;
  try {
    mapped = rewrite(errorFromJsonBytes(bytes, undefined, new ConnectError("", Code.Unknown)));
  } catch {
    mapped = undefined;
  }
  if (mapped === undefined) return { ...res, body: createAsyncIterable([bytes]) };
  const body = errorToJsonBytes(mapped, {});
  const header = new Headers(res.header);
  header.set("content-length", String(body.byteLength));
  return { ...res, status: codeToHttpStatus(mapped.code), header, body: createAsyncIterable([body]) };
}

/** Error of gRPC trailers (or a gRPC-Web trailer block), when they carry one. */
function trailerError(trailer: Headers): ConnectError | undefined {
  const status = Number(trailer.get("grpc-status") ?? "0");
  if (!status) return undefined;
  return new ConnectError(decodeURIComponent(trailer.get("grpc-message") ?? ""), status as Code);
}

/** Rewrites gRPC trailers (set by connect-es once the body ends) and gRPC-Web trailer frames. */
function rewriteGrpc(res: UniversalServerResponse, web: boolean, rewrite: Rewrite): UniversalServerResponse {
  const fix = (trailer: Headers): boolean => {
    const err = trailerError(trailer);
    const mapped = err && rewrite(err);
    if (mapped === undefined) return false;
    trailer.delete("grpc-status-details-bin");
    setTrailerStatus(trailer, mapped);
    return true;
  };
  const body = res.body;
  if (body === undefined || body instanceof Uint8Array) {
    if (res.trailer) fix(res.trailer);
    return res;
  }
  return {
    ...res,
    body: (async function* () {
      for await (const chunk of body) {
        // An uncompressed gRPC-Web trailer frame: flag 0x80, then its length, then `name: value` lines.
        if (web && chunk.byteLength >= 5 && chunk[0] === trailerFlag) {
          const len = new DataView(chunk.buffer, chunk.byteOffset, 5).getUint32(1);
          if (len === chunk.byteLength - 5) {
            const trailer = trailerParse(chunk.subarray(5));
            if (fix(trailer)) {
              const data = trailerSerialize(trailer);
              const out = new Uint8Array(5 + data.byteLength);
              out[0] = trailerFlag;
              new DataView(out.buffer).setUint32(1, data.byteLength);
              out.set(data, 5);
              yield out;
              continue;
            }
          }
        }
        yield chunk;
      }
      if (res.trailer) fix(res.trailer);
    })(),
  };
}

/** Wraps a unary RPC's universal handler so that request-decoding failures answer INVALID_ARGUMENT. */
export function withMalformedRequests(handler: UniversalHandler, log: Logger): UniversalHandler {
  const procedure = `${handler.service.typeName}/${handler.method.name}`;
  const inputType = handler.method.input;
  const wrapped = async (req: Parameters<UniversalHandler>[0]): Promise<UniversalServerResponse> => {
    const res = await handler(req);
    const rewrite: Rewrite = (err) => {
      const mapped = malformedRequest(err, inputType);
      if (mapped) log.warn("malformed request", { procedure, error: mapped.rawMessage });
      return mapped;
    };
    const type = req.header.get("content-type") ?? "";
    if (/^application\/grpc-web/i.test(type)) return rewriteGrpc(res, true, rewrite);
    if (/^application\/grpc/i.test(type)) return rewriteGrpc(res, false, rewrite);
    return rewriteConnectUnary(res, rewrite);
  };
  return Object.assign(wrapped, {
    service: handler.service,
    method: handler.method,
    requestPath: handler.requestPath,
    supportedContentType: handler.supportedContentType,
    protocolNames: handler.protocolNames,
    allowedMethods: handler.allowedMethods,
  });
}

/**
 * `connectNodeAdapter` of @connectrpc/connect-node (same options, same behaviour), with each unary
 * RPC's handler wrapped by {@link withMalformedRequests}, and each unary request admitted by the
 * server's request memory budget when one is given (admission.ts).
 */
export function meshNodeAdapter(
  options: ConnectNodeAdapterOptions,
  log: Logger,
  memory?: RequestMemoryBudget,
): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  const opts = { acceptCompression: [compressionGzip, compressionBrotli], ...options };
  const router = createConnectRouter(opts);
  opts.routes(router);
  const prefix = opts.requestPathPrefix ?? "";
  const readMaxBytes = opts.readMaxBytes ?? 0xffffffff;
  const paths = new Map<string, UniversalHandler>();
  for (const h of router.handlers) {
    paths.set(prefix + h.requestPath, h.method.methodKind === "unary" ? withMalformedRequests(h, log) : h);
  }
  return (req, res) => {
    const h = paths.get(req.url?.split("?", 2)[0] ?? "");
    if (!h) {
      if (opts.fallback) opts.fallback(req, res);
      else {
        res.writeHead(404);
        res.end();
      }
      return;
    }
    const values = opts.contextValues?.(req) ?? createContextValues();
    let uReq = universalRequestFromNodeRequest(req, res, undefined, values);
    if (typeof uReq.body === "object") {
      const body = uReq.body as AsyncIterable<Uint8Array>;
      uReq = { ...uReq, body: wireCheckedBody(body, uReq.header, h.method.input, readMaxBytes) };
    }
    let done: (() => void) | undefined;
    if (memory !== undefined && h.method.methodKind === "unary" && typeof uReq.body === "object") {
      const admitted = memory.admit(uReq.body as AsyncIterable<Uint8Array>, uReq.header);
      uReq = { ...uReq, body: admitted.body };
      values.set(admissionKey, admitted.admission);
      done = admitted.done;
    }
    h(uReq)
      .then((uRes) => {
        // A unary answer is encoded by now: the decoded request is garbage. (Writing it may never
        // settle: connect-node waits for an "end" that a ServerResponse does not emit.)
        done?.();
        return universalResponseToNodeResponse(uRes, res);
      })
      .catch((reason: unknown) => {
        done?.();
        if (ConnectError.from(reason).code === Code.Aborted) return;
        log.warn("rpc handler failed", { procedure: `${h.service.typeName}/${h.method.name}`, error: String(reason) });
      });
  };
}
