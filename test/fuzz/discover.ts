/**
 * Finds every RPC the running servers serve, from the servers themselves: gRPC reflection lists
 * each server's services and sends their file descriptors, from which the suite builds its own
 * registry. An RPC added later is fuzzed without editing the suite.
 */
import {
  create,
  createFileRegistry,
  type DescMethod,
  type DescService,
  type FileRegistry,
  fromBinary,
  getOption,
  hasOption,
  type MessageInitShape,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ServerReflection, type ServerReflectionRequestSchema } from "../../gen/grpc/reflection/v1/reflection_pb.ts";
import { skill } from "../../gen/mesh/common/v1/skill_pb.ts";

/** One RPC of one server. */
export interface ServedRpc {
  server: string;
  service: DescService;
  method: DescMethod;
  /** `/pkg.Service/Method`. */
  path: string;
  /** `pkg.Service/Method` (the procedure grants name). */
  procedure: string;
  /** `<server> pkg.Service/Method`. */
  id: string;
  /** The skill id, for skills. */
  skillId: string | undefined;
  /** The skill's example request (canonical JSON), for skills. */
  example: string | undefined;
  /** Whether the method streams requests or responses. */
  streaming: boolean;
}

/** Sends `requests` on one reflection stream and collects the answers. */
async function reflect(baseUrl: string, requests: MessageInitShape<typeof ServerReflectionRequestSchema>[]) {
  const client = createClient(ServerReflection, createGrpcTransport({ baseUrl }));
  const out = [];
  for await (const res of client.serverReflectionInfo(
    (async function* () {
      yield* requests;
    })(),
    { timeoutMs: 30_000 },
  )) {
    out.push(res);
  }
  return out;
}

/** Every RPC each server in `urls` serves, and a registry of every type they use. */
export async function discoverRpcs(
  urls: Record<string, string>,
): Promise<{ rpcs: ServedRpc[]; registry: FileRegistry }> {
  const perServer = new Map<string, string[]>();
  const files = new Map<string, Uint8Array>();
  for (const [server, url] of Object.entries(urls)) {
    const [list] = await reflect(url, [{ messageRequest: { case: "listServices", value: "" } }]);
    const names =
      list?.messageResponse.case === "listServicesResponse"
        ? list.messageResponse.value.service.map((s) => s.name)
        : [];
    if (names.length === 0) throw new Error(`${server} lists no services over reflection`);
    perServer.set(server, names);
    const answers = await reflect(
      url,
      names.map((n) => ({ messageRequest: { case: "fileContainingSymbol" as const, value: n } })),
    );
    for (const a of answers) {
      if (a.messageResponse.case !== "fileDescriptorResponse") {
        throw new Error(
          `${server}: reflection answered ${a.messageResponse.case} for ${JSON.stringify(a.originalRequest?.messageRequest.value)}`,
        );
      }
      for (const bytes of a.messageResponse.value.fileDescriptorProto) {
        const proto = fromBinary(FileDescriptorProtoSchema, bytes);
        files.set(proto.name, bytes);
      }
    }
  }
  const protos = new Map([...files].map(([name, b]) => [name, fromBinary(FileDescriptorProtoSchema, b)]));
  const absent = [...new Set([...protos.values()].flatMap((p) => p.dependency))].filter((n) => !protos.has(n));
  if (absent.length > 0) throw new Error(`reflection did not send ${absent.join(", ")}, imported by the served files`);
  // A FileDescriptorSet is read in order: dependencies first.
  const ordered: (typeof protos extends Map<string, infer P> ? P : never)[] = [];
  const placed = new Set<string>();
  const place = (name: string): void => {
    const p = protos.get(name);
    if (p === undefined || placed.has(name)) return;
    placed.add(name);
    for (const d of p.dependency) place(d);
    ordered.push(p);
  };
  for (const name of protos.keys()) place(name);
  const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: ordered }));
  const rpcs: ServedRpc[] = [];
  for (const [server, names] of perServer) {
    for (const name of names) {
      const service = registry.getService(name);
      if (service === undefined) throw new Error(`${server} serves ${name}, which reflection did not describe`);
      for (const method of service.methods) {
        const procedure = `${service.typeName}/${method.name}`;
        const opts = hasOption(method, skill) ? getOption(method, skill) : undefined;
        rpcs.push({
          server,
          service,
          method,
          path: `/${procedure}`,
          procedure,
          id: `${server} ${procedure}`,
          skillId: opts?.id || undefined,
          example: opts?.example || undefined,
          streaming: method.methodKind !== "unary",
        });
      }
    }
  }
  rpcs.sort((a, b) => a.id.localeCompare(b.id));
  return { rpcs, registry };
}
