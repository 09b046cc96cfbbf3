/**
 * google.protobuf.Any over JSON and reflection, with standard tools only: plain curl speaking
 * Connect JSON (unary and enveloped streaming) and buf curl resolving types through reflection, on
 * workflow runs whose input and step outputs (responses of skills on other servers) travel in Any.
 * Also: every INTERNAL answer carries a reference id that the server logs with the original error,
 * including errors raised while a JSON response is encoded (after the handler has returned).
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import http from "node:http";
import type net from "node:net";
import { join } from "node:path";
import { create, createRegistry, toBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema, anyPack } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CrmService } from "../gen/mesh/crm/v1/crm_service_pb.ts";
import {
  file_mesh_workflow_v1_workflow_service,
  KeywordOpportunityInputSchema,
  type Run,
  RunSchema,
  RunState,
  WorkflowService,
} from "../gen/mesh/workflow/v1/workflow_service_pb.ts";
import { createLogger } from "../lib/log/index.ts";
import { createErrorInterceptor } from "../lib/server/index.ts";
import { eventually } from "./support/backbone.ts";
import { expectCode } from "./support/expect.ts";
import { type Harness, root, startHarness } from "./support/harness.ts";

// ---- tools ------------------------------------------------------------------------------------

/** Runs `cmd` to completion with `stdin`; resolves with its exit code and output. */
function exec(
  cmd: string,
  args: string[],
  stdin: string | Uint8Array = "",
): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout: Buffer.concat(out), stderr }));
    child.stdin.end(stdin);
  });
}

/** A step as Connect JSON renders it (only what the tests read). */
interface JsonStep {
  name: string;
  state: string;
  output?: Record<string, unknown> & { "@type": string };
  approval?: { decidedBy?: string };
}
/** A run as Connect JSON renders it (only what the tests read). */
interface JsonRun {
  id: string;
  state: string;
  input?: Record<string, unknown> & { "@type": string };
  steps?: JsonStep[];
}
/** A Connect error body. */
interface JsonError {
  code: string;
  message: string;
}

const typeUrl = (typeName: string): string => `type.googleapis.com/${typeName}`;
const refPattern = /^internal error \(ref ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\)$/;

/** The reference id in an INTERNAL answer's message (fails when the message is anything else). */
function refOf(message: string): string {
  const m = refPattern.exec(message);
  expect(m, `"${message}" is not an internal error with a reference`).not.toBeNull();
  return m?.[1] as string;
}

/** A Connect streaming envelope: flags, big-endian length, then the JSON message. */
function envelope(message: unknown, flags = 0): Buffer {
  const body = Buffer.from(JSON.stringify(message));
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

/** The envelopes of a Connect streaming response body, in order. */
function envelopes(body: Buffer): { flags: number; message: unknown }[] {
  const out: { flags: number; message: unknown }[] = [];
  let at = 0;
  while (at < body.length) {
    const length = body.readUInt32BE(at + 1);
    out.push({ flags: body.readUInt8(at), message: JSON.parse(body.subarray(at + 5, at + 5 + length).toString()) });
    at += 5 + length;
  }
  return out;
}

/** The JSON documents of buf curl's output for a stream: one pretty-printed object per message. */
function jsonDocuments(text: string): unknown[] {
  const out: unknown[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{") {
      if (depth++ === 0) start = i;
    } else if (c === "}" && --depth === 0) out.push(JSON.parse(text.slice(start, i + 1)));
  }
  return out;
}

// ---- against the real servers ------------------------------------------------------------------

describe("Any over Connect JSON and reflection (real servers)", () => {
  let h: Harness;
  let db: pg.Client;
  const service = "mesh.workflow.v1.WorkflowService";
  const buf = join(root, "node_modules", ".bin", "buf");
  const wf = () => h.client("technical", WorkflowService);
  // The reference run's input, as a JSON Any (see workflows/smoke.ts).
  const input = {
    "@type": typeUrl(KeywordOpportunityInputSchema.typeName),
    keyword: "assisted living austin",
    siteDomain: "example.com",
    city: "Austin",
    region: "TX",
    monthlyVolume: "2400",
    difficulty: 38,
    currentPosition: 14,
    approvers: ["json-tester"],
  };
  const researchType = typeUrl("mesh.research.v1.KeywordResearchResponse");
  const rankingsType = typeUrl("mesh.seo.v1.TrackRankingsResponse");

  /** Connect JSON unary call with plain curl; resolves with the HTTP status and the parsed body. */
  const curl = async (method: string, body: unknown): Promise<{ status: number; body: unknown }> => {
    const res = await exec(
      "curl",
      [
        "-sS",
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-H",
        `authorization: Bearer ${h.tokens.operator}`,
        "--data-binary",
        "@-",
        "--write-out",
        "\n%{http_code}",
        `${h.urls.technical}/${service}/${method}`,
      ],
      JSON.stringify(body),
    );
    expect(res.code, res.stderr).toBe(0);
    const text = res.stdout.toString();
    const nl = text.lastIndexOf("\n");
    return { status: Number(text.slice(nl + 1)), body: JSON.parse(text.slice(0, nl)) };
  };
  /** WatchRun over Connect JSON streaming with plain curl; resolves when the server ends the stream. */
  const curlWatch = async (runId: string): Promise<{ flags: number; message: unknown }[]> => {
    const res = await exec(
      "curl",
      [
        "-sS",
        "-N",
        "-X",
        "POST",
        "-H",
        "content-type: application/connect+json",
        "-H",
        `authorization: Bearer ${h.tokens.operator}`,
        "--data-binary",
        "@-",
        `${h.urls.technical}/${service}/WatchRun`,
      ],
      envelope({ runId }),
    );
    expect(res.code, res.stderr).toBe(0);
    return envelopes(res.stdout);
  };
  /** buf curl over Connect with h2c, resolving every type (Any contents included) through reflection. */
  const bufCurl = async (method: string, body: unknown): Promise<string> => {
    // -H headers go to the call only: reflection is public and is asked without the token.
    const res = await exec(buf, [
      "curl",
      "--protocol",
      "connect",
      "--http2-prior-knowledge",
      "-H",
      `authorization: Bearer ${h.tokens.operator}`,
      "-d",
      JSON.stringify(body),
      `${h.urls.technical}/${service}/${method}`,
    ]);
    expect(res.code, res.stderr).toBe(0);
    return res.stdout.toString();
  };
  const startRun = async (): Promise<JsonRun> => {
    const res = await curl("StartRun", { requestId: randomUUID(), workflow: "keyword_opportunity", input });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return (res.body as { run: JsonRun }).run;
  };
  const untilState = (runId: string, done: (r: Run) => boolean): Promise<Run> =>
    eventually(async () => {
      const run = (await wf().getRun({ runId })).run;
      return run && done(run) ? run : undefined;
    }, 30_000);
  const atGate = (r: Run) => r.state === RunState.WAITING;
  const logLine = (ref: string): Promise<string> =>
    eventually(() => h.logs.technical?.split("\n").find((l) => l.includes(`ref=${ref}`)));

  // Run A goes through plain curl, run B through buf curl; watchA is curl's WatchRun of A.
  let runA: JsonRun;
  let runB: JsonRun;
  let watchA: Promise<{ flags: number; message: unknown }[]>;

  beforeAll(async () => {
    // keyword_opportunity crosses Research (content server) and SEO (technical server) only.
    h = await startHarness({ servers: ["content", "technical"], env: { MESH_WORKFLOW_TICK_MS: "100" } });
    db = new pg.Client({ connectionString: h.databaseUrl });
    await db.connect();
  }, 90_000);
  afterAll(async () => {
    await db?.end();
    await h?.close();
  });

  it("StartRun over Connect JSON takes the input as a JSON Any and answers it back as one", async () => {
    runA = await startRun();
    runB = await startRun();
    expect(runA.id).not.toBe(runB.id);
    expect(runA.state).toBe("RUN_STATE_RUNNING");
    expect(runA.input).toEqual(input);
    // Watch A from its start, so the stream shows its whole progress.
    watchA = curlWatch(runA.id);
  });

  it("GetRun and ListRuns over JSON render a content-server step output as JSON with its @type", async () => {
    await untilState(runA.id, atGate);
    await untilState(runB.id, atGate);
    const got = await curl("GetRun", { runId: runA.id });
    expect(got.status, JSON.stringify(got.body)).toBe(200);
    const run = (got.body as { run: JsonRun }).run;
    expect(run.input).toEqual(input);
    const research = run.steps?.find((s) => s.name === "validate_opportunity");
    expect(research?.state).toBe("STEP_STATE_SUCCEEDED");
    expect(research?.output?.["@type"]).toBe(researchType);
    expect(research?.output?.keywords).toEqual([
      expect.objectContaining({ keyword: "assisted living austin", monthlySearchVolume: "2400", difficulty: 38 }),
    ]);
    expect(run.steps?.find((s) => s.name === "approve_brief")?.state).toBe("STEP_STATE_WAITING_APPROVAL");

    const listed = await curl("ListRuns", { workflow: "keyword_opportunity" });
    expect(listed.status, JSON.stringify(listed.body)).toBe(200);
    const runs = (listed.body as { runs: JsonRun[] }).runs;
    expect(runs.map((r) => r.id).sort()).toEqual([runA.id, runB.id].sort());
    for (const r of runs) expect(r.input).toEqual(input);
  });

  it("buf curl resolves the step output's content-server type through reflection on GetRun", async () => {
    const run = (JSON.parse(await bufCurl("GetRun", { runId: runB.id })) as { run: JsonRun }).run;
    expect(run.input).toEqual(input);
    const research = run.steps?.find((s) => s.name === "validate_opportunity");
    expect(research?.output?.["@type"]).toBe(researchType);
    expect(research?.output?.keywords).toEqual([expect.objectContaining({ keyword: "assisted living austin" })]);
  });

  it("ApproveStep over JSON approves and answers success with the run's outputs", async () => {
    const res = await curl("ApproveStep", {
      requestId: randomUUID(),
      runId: runA.id,
      step: "approve_brief",
      approver: "json-tester",
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const run = (res.body as { run: JsonRun }).run;
    const gate = run.steps?.find((s) => s.name === "approve_brief");
    expect(gate?.state).toBe("STEP_STATE_SUCCEEDED");
    expect(gate?.approval?.decidedBy).toBe("json-tester");
    expect(run.steps?.find((s) => s.name === "validate_opportunity")?.output?.["@type"]).toBe(researchType);
  });

  it("WatchRun over Connect JSON streams the run's progress to SUCCEEDED, outputs as JSON Any", async () => {
    const frames = await watchA;
    const end = frames.at(-1);
    // The end-of-stream frame (flag 0x02) carries no error.
    expect(end?.flags).toBe(0x02);
    expect(end?.message).toEqual({});
    const runs = frames.slice(0, -1).map((f) => {
      expect(f.flags).toBe(0);
      return (f.message as { run: JsonRun }).run;
    });
    expect(runs[0]?.id).toBe(runA.id);
    expect(runs.length).toBeGreaterThan(1);
    expect(runs.some((r) => r.state === "RUN_STATE_WAITING")).toBe(true);
    const last = runs.at(-1);
    expect(last?.state).toBe("RUN_STATE_SUCCEEDED");
    expect(last?.steps?.map((s) => [s.name, s.state, s.output?.["@type"]])).toEqual([
      ["validate_opportunity", "STEP_STATE_SUCCEEDED", researchType],
      ["approve_brief", "STEP_STATE_SUCCEEDED", typeUrl("mesh.workflow.v1.Approval")],
      ["rank_targets", "STEP_STATE_SUCCEEDED", rankingsType],
    ]);
  });

  it("buf curl ApproveStep and WatchRun succeed and print the Any contents as JSON", async () => {
    const approved = JSON.parse(
      await bufCurl("ApproveStep", {
        requestId: randomUUID(),
        runId: runB.id,
        step: "approve_brief",
        approver: "json-tester",
      }),
    ) as { run: JsonRun };
    expect(approved.run.steps?.find((s) => s.name === "approve_brief")?.state).toBe("STEP_STATE_SUCCEEDED");
    expect(approved.run.steps?.find((s) => s.name === "validate_opportunity")?.output?.["@type"]).toBe(researchType);

    // The stream ends when the run does.
    const watched = jsonDocuments(await bufCurl("WatchRun", { runId: runB.id })).map(
      (d) => (d as { run: JsonRun }).run,
    );
    expect(watched.length).toBeGreaterThan(0);
    const last = watched.at(-1);
    expect(last?.state).toBe("RUN_STATE_SUCCEEDED");
    expect(last?.input).toEqual(input);
    const rank = last?.steps?.find((s) => s.name === "rank_targets");
    expect(rank?.output?.["@type"]).toBe(rankingsType);
    expect(rank?.output?.rankings).toEqual([expect.objectContaining({ keyword: "assisted living austin" })]);
  });

  it("an output that cannot be encoded as JSON answers INTERNAL with a logged reference, unary and streaming", async () => {
    // A run stored before a contract change retired its output's type: the type is in no registry.
    const retired = create(AnySchema, { typeUrl: typeUrl("mesh.retired.v1.Gone"), value: new Uint8Array([8, 1]) });
    const updated = await db.query(
      `update technical.workflow_step set output = $1 where run_id = $2 and name = 'validate_opportunity'`,
      [Buffer.from(toBinary(AnySchema, retired)), runA.id],
    );
    expect(updated.rowCount).toBe(1);

    const got = await curl("GetRun", { runId: runA.id });
    expect(got.status).toBe(500);
    const error = got.body as JsonError;
    expect(error.code).toBe("internal");
    const ref = refOf(error.message);
    const line = await logLine(ref);
    expect(line).toContain(`procedure=${service}/GetRun`);
    // The reason stays on the server.
    expect(line).toContain("is not in the type registry");
    expect(JSON.stringify(got.body)).not.toContain("registry");

    const frames = await curlWatch(runA.id);
    expect(frames).toHaveLength(1);
    const [end] = frames;
    expect(end?.flags).toBe(0x02);
    const streamError = (end?.message as { error?: JsonError } | undefined)?.error;
    expect(streamError?.code).toBe("internal");
    expect(await logLine(refOf(streamError?.message ?? ""))).toContain(`procedure=${service}/WatchRun`);

    // Binary callers get the Any as stored: encoding it needs no registry.
    const binary = (await wf().getRun({ runId: runA.id })).run;
    expect(binary?.steps.find((s) => s.name === "validate_opportunity")?.output?.typeUrl).toBe(retired.typeUrl);
  });
});

// ---- error mapping on a real connect-node server -----------------------------------------------

describe("INTERNAL answers carry a reference the server logs (connect-node server)", () => {
  const lines: string[] = [];
  const log = createLogger("error", (l) => lines.push(l));
  const jsonOptions = { registry: createRegistry(file_mesh_workflow_v1_workflow_service) };
  const secret = "password=hunter2 at db.internal:5432";
  const retired: Any = create(AnySchema, { typeUrl: typeUrl("mesh.retired.v1.Gone"), value: new Uint8Array([8, 1]) });
  const known = anyPack(KeywordOpportunityInputSchema, create(KeywordOpportunityInputSchema, { keyword: "k" }));
  const run = (id: string, input: Any) => create(RunSchema, { id, input });
  let server: http.Server;
  let baseUrl: string;

  beforeAll(async () => {
    const handler = connectNodeAdapter({
      jsonOptions,
      interceptors: [createErrorInterceptor(log, { jsonOptions })],
      routes: (router) => {
        router.service(WorkflowService, {
          getRun() {
            throw new Error(secret);
          },
          listRuns(req) {
            return { runs: [run("a", known), ...(req.workflow === "retired" ? [run("b", retired)] : [])] };
          },
          async *watchRun(req) {
            yield { run: run(req.runId, known) };
            if (req.runId === "throws") throw new Error(secret);
            yield { run: run(req.runId, retired) };
          },
        });
        router.service(CrmService, {
          // Timestamps past year 9999 have no JSON form.
          scoreLeads: () => ({ asOf: { seconds: 400_000_000_000n, nanos: 0 } }),
        });
      },
    });
    server = http.createServer(handler);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    baseUrl = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  const client = (useBinaryFormat: boolean) =>
    createClient(
      WorkflowService,
      createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat, jsonOptions }),
    );
  /** Expects an INTERNAL with a reference that one log line carries, with `procedure` and `logged`. */
  const expectLoggedInternal = async (err: ConnectError, procedure: string, logged: string): Promise<void> => {
    expect(err.code).toBe(Code.Internal);
    const ref = refOf(err.rawMessage);
    expect(err.rawMessage).not.toContain(logged);
    const matching = lines.filter((l) => l.includes(`ref=${ref}`));
    expect(matching).toHaveLength(1);
    expect(matching[0]).toContain(`procedure=${procedure}`);
    expect(matching[0]).toContain(logged);
  };

  it("a unary handler's plain Error: INTERNAL with a reference, the message only in the log", async () => {
    for (const binary of [true, false]) {
      const err = await expectCode(client(binary).getRun({ runId: "x" }), Code.Internal);
      await expectLoggedInternal(err, "mesh.workflow.v1.WorkflowService/GetRun", secret);
    }
  });

  it("a streaming handler's plain Error after a message: the message arrives, then INTERNAL with a reference", async () => {
    for (const binary of [true, false]) {
      const got: string[] = [];
      const err = await expectCode(
        (async () => {
          for await (const m of client(binary).watchRun({ runId: "throws" })) got.push(m.run?.id ?? "");
        })(),
        Code.Internal,
      );
      expect(got).toEqual(["throws"]);
      await expectLoggedInternal(err, "mesh.workflow.v1.WorkflowService/WatchRun", secret);
    }
  });

  it("a JSON response that cannot be encoded: INTERNAL with a logged reference; binary answers as is", async () => {
    const json = client(false);
    expect((await json.listRuns({})).runs.map((r) => r.input?.typeUrl)).toEqual([known.typeUrl]);
    const err = await expectCode(json.listRuns({ workflow: "retired" }), Code.Internal);
    await expectLoggedInternal(err, "mesh.workflow.v1.WorkflowService/ListRuns", "is not in the type registry");
    const binary = await client(true).listRuns({ workflow: "retired" });
    expect(binary.runs.map((r) => r.input?.typeUrl)).toEqual([known.typeUrl, retired.typeUrl]);
  });

  it("a streamed JSON message that cannot be encoded: the earlier messages arrive, then INTERNAL with a reference", async () => {
    const got: string[] = [];
    const err = await expectCode(
      (async () => {
        for await (const m of client(false).watchRun({ runId: "w" })) got.push(m.run?.input?.typeUrl ?? "");
      })(),
      Code.Internal,
    );
    expect(got).toEqual([known.typeUrl]);
    await expectLoggedInternal(err, "mesh.workflow.v1.WorkflowService/WatchRun", "is not in the type registry");
  });

  it("a Connect GET asking for JSON is checked like a POST", async () => {
    const crm = (useBinaryFormat: boolean) =>
      createClient(
        CrmService,
        createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat, useHttpGet: true }),
      );
    const err = await expectCode(crm(false).scoreLeads({}), Code.Internal);
    await expectLoggedInternal(err, "mesh.crm.v1.CrmService/ScoreLeads", "google.protobuf.Timestamp");
    const binary = await crm(true).scoreLeads({});
    expect(binary.asOf?.seconds).toBe(400_000_000_000n);
  });
});
