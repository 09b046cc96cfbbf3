/**
 * OpenTelemetry SDK wiring, done once at process start (libraries only use @opentelemetry/api).
 * OTLP/HTTP export of traces and metrics when an endpoint is configured; an in-memory span
 * exporter (bounded) otherwise, and always available to tests.
 */
import { context, metrics, propagation, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-http";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { MeterProvider, type MetricReader, PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics";
import {
  BatchSpanProcessor,
  InMemorySpanExporter,
  type ReadableSpan,
  type SpanProcessor,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";

/** Options of {@link setupTelemetry}. */
export interface TelemetryOptions {
  /** `service.name` of this process, e.g. `mesh-content`. */
  serviceName: string;
  /** Version reported as `service.version`. */
  serviceVersion?: string;
  /** OTLP/HTTP base endpoint (`http://collector:4318`); traces go to `/v1/traces`, metrics to `/v1/metrics`. */
  otlpEndpoint?: string | undefined;
  /** Keep finished spans in memory (tests, and the local trace view when nothing is exported). */
  memorySpans?: boolean;
  /** Extra metric readers (tests collect metrics through one). */
  metricReaders?: MetricReader[];
  /** Metric export interval for OTLP. */
  metricIntervalMs?: number;
}

/** The wired SDK. */
export interface Telemetry {
  /** The tracer provider (also registered globally). */
  tracerProvider: TracerProvider;
  /** The meter provider (also registered globally). */
  meterProvider: MeterProvider;
  /** Finished spans kept in memory, when enabled. */
  memoryExporter: InMemorySpanExporter | undefined;
  /** Flushes pending spans and metrics. */
  flush(): Promise<void>;
  /** Flushes and shuts the providers down. */
  shutdown(): Promise<void>;
}

/** An in-memory exporter that keeps only the most recent `limit` spans. */
class BoundedMemoryExporter extends InMemorySpanExporter {
  private readonly limit: number;
  constructor(limit: number) {
    super();
    this.limit = limit;
  }
  override export(spans: ReadableSpan[], cb: Parameters<InMemorySpanExporter["export"]>[1]): void {
    super.export(spans, cb);
    // Trim in batches so keeping the last `limit` spans costs O(1) per span, amortised.
    const finished = this.getFinishedSpans();
    if (finished.length > 2 * this.limit) finished.splice(0, finished.length - this.limit);
  }
}

/** Wires tracing, metrics and W3C propagation for this process and registers them globally. */
export function setupTelemetry(opts: TelemetryOptions): Telemetry {
  const resource = resourceFromAttributes({
    [ATTR_SERVICE_NAME]: opts.serviceName,
    [ATTR_SERVICE_VERSION]: opts.serviceVersion ?? "0.1.0",
    "service.namespace": "marketing-mesh",
    "service.instance.id": `${opts.serviceName}-${process.pid}`,
  });
  const spanProcessors: SpanProcessor[] = [];
  if (opts.otlpEndpoint) {
    const url = `${opts.otlpEndpoint.replace(/\/$/, "")}/v1/traces`;
    spanProcessors.push(
      new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url }), scheduledDelayMillis: 500 }),
    );
  }
  const memoryExporter = opts.memorySpans ? new BoundedMemoryExporter(10_000) : undefined;
  // Batched like OTLP export, to keep the per-span cost off the request path.
  if (memoryExporter)
    spanProcessors.push(new BatchSpanProcessor({ exporter: memoryExporter, scheduledDelayMillis: 200 }));
  const tracerProvider = new TracerProvider({ resource, spanProcessors });

  const readers: MetricReader[] = [...(opts.metricReaders ?? [])];
  if (opts.otlpEndpoint) {
    readers.push(
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter({ url: `${opts.otlpEndpoint.replace(/\/$/, "")}/v1/metrics` }),
        exportIntervalMillis: opts.metricIntervalMs ?? 10_000,
      }),
    );
  }
  const meterProvider = new MeterProvider({ resource, readers });

  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(
    new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
  );
  trace.setGlobalTracerProvider(tracerProvider);
  metrics.setGlobalMeterProvider(meterProvider);

  return {
    tracerProvider,
    meterProvider,
    memoryExporter,
    async flush() {
      await Promise.all([tracerProvider.forceFlush(), meterProvider.forceFlush()]);
    },
    async shutdown() {
      await Promise.allSettled([tracerProvider.shutdown(), meterProvider.shutdown()]);
    },
  };
}
