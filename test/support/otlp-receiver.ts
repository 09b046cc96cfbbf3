/**
 * A local OTLP/HTTP receiver (JSON encoding) for tests: what a collector would receive from the
 * servers' OTLP exporters, flattened into spans with their service name.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

/** One received span. */
export interface ReceivedSpan {
  /** `service.name` of the process that emitted it. */
  service: string;
  /** Hex trace id. */
  traceId: string;
  /** Hex span id. */
  spanId: string;
  /** Hex parent span id, or "". */
  parentSpanId: string;
  /** Span name. */
  name: string;
  /** OTLP span kind (2 = SERVER, 3 = CLIENT). */
  kind: number;
  /** Attributes, values unwrapped. */
  attributes: Record<string, string | number | boolean>;
  /** Status code (0 unset, 1 ok, 2 error). */
  statusCode: number;
  /** Start time, ms since the epoch. */
  startMs: number;
  /** Duration, ms. */
  durationMs: number;
}

type AnyValue = { stringValue?: string; intValue?: string | number; doubleValue?: number; boolValue?: boolean };

function unwrap(v: AnyValue): string | number | boolean {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  return "";
}

/** A running receiver. */
export interface OtlpReceiver {
  /** Endpoint to put in OTEL_EXPORTER_OTLP_ENDPOINT. */
  endpoint: string;
  /** Every span received so far. */
  spans: ReceivedSpan[];
  /** Waits until `predicate` holds for the received spans (polling), or throws after `timeoutMs`. */
  waitFor(predicate: (spans: ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>;
  /** Stops the receiver. */
  close(): Promise<void>;
}

/** Starts a receiver on a free loopback port. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.url === "/v1/traces") {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
          resourceSpans?: Array<{
            resource?: { attributes?: Array<{ key: string; value: AnyValue }> };
            scopeSpans?: Array<{ spans?: Array<Record<string, unknown>> }>;
          }>;
        };
        for (const rs of body.resourceSpans ?? []) {
          const service = String(unwrap(rs.resource?.attributes?.find((a) => a.key === "service.name")?.value ?? {}));
          for (const ss of rs.scopeSpans ?? []) {
            for (const s of ss.spans ?? []) {
              const attributes: ReceivedSpan["attributes"] = {};
              for (const a of (s.attributes as Array<{ key: string; value: AnyValue }>) ?? [])
                attributes[a.key] = unwrap(a.value);
              spans.push({
                service,
                traceId: String(s.traceId),
                spanId: String(s.spanId),
                parentSpanId: String(s.parentSpanId ?? ""),
                name: String(s.name),
                kind: Number(s.kind),
                attributes,
                statusCode: Number((s.status as { code?: number } | undefined)?.code ?? 0),
                startMs: Number(BigInt(String(s.startTimeUnixNano ?? 0)) / 1000n) / 1000,
                durationMs:
                  Number(BigInt(String(s.endTimeUnixNano ?? 0)) - BigInt(String(s.startTimeUnixNano ?? 0))) / 1e6,
              });
            }
          }
        }
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    async waitFor(predicate, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(spans)) {
        if (Date.now() > deadline) throw new Error(`spans never matched; received ${spans.length}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return spans;
    },
    close: () => new Promise((r) => server.close(() => r())),
  };
}
