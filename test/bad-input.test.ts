/**
 * Bad input over the wire, against a real server: undecodable protobuf, non-strict JSON, deep
 * nesting and requests with very many violations all answer a small INVALID_ARGUMENT (never
 * INTERNAL, never a stack trace), and the server keeps serving.
 */
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BadRequestSchema } from "../gen/google/rpc/error_details_pb.ts";
import { KeywordResearchRequestSchema, ResearchService } from "../gen/mesh/research/v1/research_service_pb.ts";
import { maxErrorMessageChars, toConnectError } from "../lib/errors/index.ts";
import { expectCode } from "./support/expect.ts";
import { type Harness, startHarness } from "./support/harness.ts";

let h: Harness;

beforeAll(async () => {
  // Technical hosts the workflow engine, whose WatchRun streams (decoded inside the interceptors).
  h = await startHarness({ servers: ["content", "technical", "operations"] });
});
afterAll(async () => {
  await h?.close();
});

const keywordResearch = "/mesh.research.v1.ResearchService/KeywordResearch";
const listSkills = "/mesh.registry.v1.RegistryService/ListSkills";
const getSkill = "/mesh.registry.v1.RegistryService/GetSkill";
const good = { keywords: [{ keyword: "memory care austin", monthlySearchVolume: 100n, difficulty: 20 }] };

interface RawResponse {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
}

/** POSTs `body` over h2c with `headers` (plus the operator's token) and collects everything. */
async function post(
  path: string,
  headers: Record<string, string>,
  body: Uint8Array | string,
  server: "content" | "technical" | "operations" = "content",
): Promise<RawResponse> {
  const session = http2.connect(h.urls[server]);
  try {
    return await new Promise<RawResponse>((resolve, reject) => {
      const req = session.request({
        ":method": "POST",
        ":path": path,
        authorization: `Bearer ${h.tokens.operator}`,
        ...headers,
      });
      const out: RawResponse = { status: 0, headers: {}, trailers: {}, body: Buffer.alloc(0) };
      const chunks: Buffer[] = [];
      req.on("response", (hd) => {
        out.status = Number(hd[":status"]);
        out.headers = hd;
      });
      req.on("trailers", (t) => {
        out.trailers = t;
      });
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => resolve({ ...out, body: Buffer.concat(chunks) }));
      req.on("error", reject);
      req.end(body);
    });
  } finally {
    session.close();
  }
}

/** A gRPC length-prefixed frame. */
function frame(flags: number, data: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(data.byteLength, 1);
  return Buffer.concat([head, data]);
}

const garbage = Uint8Array.from([0x0f, 0x01]);

function expectNoStack(text: string): void {
  expect(text).not.toMatch(/\n\s+at |node_modules|\.ts:\d+/);
}

/** Connect error body of a unary call. */
function connectError(res: RawResponse): { code: string; message: string } {
  expect(res.body.byteLength).toBeLessThan(8192);
  const text = res.body.toString("utf8");
  expectNoStack(text);
  return JSON.parse(text) as { code: string; message: string };
}

/** Status and message of a gRPC answer (from the trailers, or headers for trailers-only). */
function grpcStatus(res: RawResponse): { status: string; message: string } {
  const t = res.trailers["grpc-status"] !== undefined ? res.trailers : res.headers;
  const message = decodeURIComponent(String(t["grpc-message"] ?? ""));
  expectNoStack(message);
  return { status: String(t["grpc-status"]), message };
}

/** The server still answers a good call. */
async function stillServing(): Promise<void> {
  const res = await h.client("content", ResearchService).keywordResearch(good);
  expect(res).toBeDefined();
}

describe("undecodable protobuf", () => {
  it("answers INVALID_ARGUMENT over Connect, naming the request type", async () => {
    const res = await post(keywordResearch, { "content-type": "application/proto" }, garbage);
    expect(res.status).toBe(400);
    const err = connectError(res);
    expect(err.code).toBe("invalid_argument");
    expect(err.message).toMatch(/^request body is not a valid mesh\.research\.v1\.KeywordResearchRequest message: /);
    await stillServing();
  });

  it("answers INVALID_ARGUMENT over gRPC for a garbage frame and for an unannounced compressed frame", async () => {
    const grpc = { "content-type": "application/grpc+proto", te: "trailers" };
    const bad = grpcStatus(await post(keywordResearch, grpc, frame(0, garbage)));
    expect(bad.status).toBe(String(Code.InvalidArgument));
    expect(bad.message).toMatch(/not a valid mesh\.research\.v1\.KeywordResearchRequest message/);
    const compressed = grpcStatus(await post(keywordResearch, grpc, frame(1, garbage)));
    expect(compressed.status).toBe(String(Code.InvalidArgument));
    expect(compressed.message).toMatch(/compressed.*grpc-encoding/);
    await stillServing();
  });

  it("answers INVALID_ARGUMENT for a body flagged gzip that is not gzip, over Connect, gRPC and a stream", async () => {
    const notGzip = Uint8Array.from([0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef]);
    const connect = connectError(
      await post(keywordResearch, { "content-type": "application/proto", "content-encoding": "gzip" }, notGzip),
    );
    expect(connect.code).toBe("invalid_argument");
    expect(connect.message).toBe("request body is flagged as compressed but does not decompress");
    const grpc = { "content-type": "application/grpc+proto", te: "trailers", "grpc-encoding": "gzip" };
    const unary = grpcStatus(await post(keywordResearch, grpc, frame(1, notGzip)));
    expect(unary.status).toBe(String(Code.InvalidArgument));
    const stream = grpcStatus(
      await post("/mesh.workflow.v1.WorkflowService/WatchRun", grpc, frame(1, notGzip), "technical"),
    );
    expect(stream.status).toBe(String(Code.InvalidArgument));
    await stillServing();
  });

  it("answers INVALID_ARGUMENT for a field carried with a wire type its declaration cannot have", async () => {
    // GetSkill's `skill` (a string) sent as a varint, which protobuf-es alone would read as a string.
    const body = Uint8Array.from([0x08, 0x04, 0x61, 0x62, 0x63, 0x64]);
    const connect = connectError(await post(getSkill, { "content-type": "application/proto" }, body));
    expect(connect.code).toBe("invalid_argument");
    expect(connect.message).toBe(
      "request body is not a valid mesh.registry.v1.GetSkillRequest message: field skill (wire type Varint) cannot have that wire type",
    );
    const grpc = { "content-type": "application/grpc+proto", te: "trailers" };
    expect(grpcStatus(await post(getSkill, grpc, frame(0, body))).status).toBe(String(Code.InvalidArgument));
  });

  it("answers INVALID_ARGUMENT for a gRPC unary call with no message or two", async () => {
    const grpc = { "content-type": "application/grpc+proto", te: "trailers" };
    const none = grpcStatus(await post(keywordResearch, grpc, new Uint8Array(0)));
    expect(none.status).toBe(String(Code.InvalidArgument));
    expect(none.message).toMatch(/exactly one mesh\.research\.v1\.KeywordResearchRequest message: missing input/);
    const one = toBinary(KeywordResearchRequestSchema, create(KeywordResearchRequestSchema, good));
    const two = grpcStatus(await post(keywordResearch, grpc, Buffer.concat([frame(0, one), frame(0, one)])));
    expect(two.status).toBe(String(Code.InvalidArgument));
    expect(two.message).toMatch(/received extra input message/);
  });

  it("answers INVALID_ARGUMENT for a streaming RPC's garbage request, which the interceptors see", async () => {
    const grpc = { "content-type": "application/grpc+proto", te: "trailers" };
    const res = await post("/mesh.workflow.v1.WorkflowService/WatchRun", grpc, frame(0, garbage), "technical");
    const st = grpcStatus(res);
    expect(st.status).toBe(String(Code.InvalidArgument));
    expect(st.message).toMatch(/not a valid mesh\.workflow\.v1\.WatchRunRequest message/);
    expect(h.logs.technical).toMatch(
      /^warn +malformed request procedure=mesh\.workflow\.v1\.WorkflowService\/WatchRun/m,
    );
  });

  it("answers INVALID_ARGUMENT over gRPC-Web", async () => {
    const res = await post(keywordResearch, { "content-type": "application/grpc-web+proto" }, frame(0, garbage));
    const text = res.body.toString("latin1");
    expect(text).toMatch(/grpc-status: ?3\r\n/);
    expect(text).toMatch(/not%20a%20valid|not a valid/);
    expectNoStack(text);
  });

  it("logs malformed requests at warn, without a stack", () => {
    const lines = (h.logs.content ?? "").split("\n").filter((l) => l.includes("malformed request"));
    expect(lines.length).toBeGreaterThanOrEqual(3);
    for (const l of lines) expect(l).toMatch(/^warn /);
    expect(h.logs.content).not.toMatch(/unexpected error/);
  });
});

describe("strict JSON", () => {
  const json = { "content-type": "application/json" };

  it("refuses unknown fields, naming them", async () => {
    const res = await post(keywordResearch, json, JSON.stringify({ keywords: [{ keyword: "a" }], bogus: 1 }));
    expect(res.status).toBe(400);
    const err = connectError(res);
    expect(err.code).toBe("invalid_argument");
    expect(err.message).toMatch(/bogus/);
  });

  it("refuses malformed UTF-8 in a JSON body instead of reading it as U+FFFD", async () => {
    const body = Buffer.concat([
      Buffer.from('{"keywords":[{"keyword":"'),
      Buffer.from([0xff, 0xfe, 0xfd]),
      Buffer.from('"}]}'),
    ]);
    const res = await post(keywordResearch, json, body);
    expect(res.status).toBe(400);
    const err = connectError(res);
    expect(err.code).toBe("invalid_argument");
    expect(err.message).toBe("request JSON is not valid UTF-8");
  });

  it("refuses unknown enum names, naming the field", async () => {
    const res = await post(listSkills, json, JSON.stringify({ category: "NOT_A_CATEGORY" }));
    expect(res.status).toBe(400);
    const err = connectError(res);
    expect(err.code).toBe("invalid_argument");
    expect(err.message).toMatch(/category/);
  });

  it("refuses 100,000-deep nesting without blowing the stack, and keeps serving", async () => {
    const deep = `${"[".repeat(100_000)}${"]".repeat(100_000)}`;
    const res = await post(keywordResearch, json, `{"keywords":[{"keyword":"a"}],"x":${deep}}`);
    expect(res.status).toBe(400);
    const err = connectError(res);
    expect(err.code).toBe("invalid_argument");
    expect(err.message).toMatch(/nests deeper than 100 levels/);
    await stillServing();
  });
});

describe("errors stay small", () => {
  it("caps any error's message and details", () => {
    const detail = { desc: BadRequestSchema, value: create(BadRequestSchema, { fieldViolations: [] }) };
    const big = create(BadRequestSchema, {
      fieldViolations: Array.from({ length: 500 }, (_, i) => ({ field: `f${i}`, description: "x".repeat(50) })),
    });
    const err = toConnectError(
      new ConnectError("m".repeat(100_000), Code.InvalidArgument, undefined, [
        detail,
        { desc: BadRequestSchema, value: big },
      ]),
      () => undefined,
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage.length).toBeLessThanOrEqual(maxErrorMessageChars);
    expect(err.rawMessage).toMatch(/… \(truncated\)$/);
    expect(err.details).toHaveLength(1); // the small one fits, the 40 KB one does not
  });

  it("reports the list limit of 50,001 empty keywords in a small body", async () => {
    const body = JSON.stringify({ keywords: Array.from({ length: 50_001 }, () => ({})) });
    const res = await post(keywordResearch, { "content-type": "application/json" }, body);
    expect(res.status).toBe(400);
    expect(res.body.byteLength).toBeLessThan(8192);
    const err = connectError(res);
    expect(err.code).toBe("invalid_argument");
    expect(err.message).toMatch(/^keywords: must contain no more than 50000 item/);
    await stillServing();
  });

  it("answers INVALID_ARGUMENT over gRPC for 500 empty keywords, with at most 20 field violations", async () => {
    const keywords = Array.from({ length: 500 }, () => ({ keyword: "" }));
    const err = await expectCode(
      h.client("content", ResearchService, "operator", "grpc").keywordResearch({ keywords }),
      Code.InvalidArgument,
    );
    expect(err.rawMessage).toMatch(/^keywords\[0\]\.keyword: .* and 499 more violations$/);
    const [bad] = err.findDetails(BadRequestSchema);
    expect(bad?.fieldViolations).toHaveLength(20);
    expect(bad?.fieldViolations[0]?.field).toBe("keywords[0].keyword");
    await stillServing();
  });
});

/** Resident memory of a server process now and at its peak, in bytes (Linux /proc). */
function memoryOf(server: "content" | "technical" | "operations"): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${h.process(server)?.pid}/status`, "utf8");
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
}

describe("oversized lists (issue 12, failure 1: each once ran a server out of memory or answered 208 MB)", () => {
  const empties = (field: string, n: number, rest: string): string => `{${rest}"${field}":[${"{},".repeat(n - 1)}{}]}`;
  it.each([
    ["operations", "/mesh.crm.v1.CrmService/ModelCustomerLifecycle", "transactions", 1_000_001, 250_000, ""],
    ["operations", "/mesh.crm.v1.CrmService/ForecastSales", "deals", 100_001, 100_000, '"currencyCode":"USD",'],
    ["technical", "/mesh.data.v1.DataService/AnalyzeCohorts", "users", 500_001, 250_000, ""],
    ["technical", "/mesh.reporting.v1.ReportingService/PredictLeadScores", "examples", 1_000_001, 200_000, ""],
    [
      "technical",
      "/mesh.seo.v1.SeoService/GenerateSitemap",
      "urls",
      1_000_001,
      250_000,
      '"requestId":"3f1c2a9e-8b7d-4c6e-9a1f-2b3c4d5e6f70","baseUrl":"https://example.com/",',
    ],
    ["technical", "/mesh.system.v1.SystemService/MonitorSecurity", "events", 100_001, 100_000, ""],
  ] as const)(
    "%s %s with %s × %i empty elements answers a small INVALID_ARGUMENT naming the limit",
    async (server, path, field, n, limit, rest) => {
      const res = await post(path, { "content-type": "application/json" }, empties(field, n, rest), server);
      expect(res.status).toBe(400);
      expect(res.body.byteLength).toBeLessThan(2048);
      const err = connectError(res);
      expect(err.code).toBe("invalid_argument");
      expect(err.message).toBe(`${field}: must contain no more than ${limit} item(s)`);
      // Memory stays bounded (the failures grew servers to 2.3–3 GB or past the heap).
      expect(memoryOf(server).rss).toBeLessThan(1.5 * 1024 ** 3);
      await stillServing();
    },
  );
});
