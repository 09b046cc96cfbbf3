/**
 * gRPC server reflection, v1 and v1alpha, so `buf curl`, grpcurl and Postman discover services
 * without local .proto files. Answers from the same descriptors the server is built from.
 */
import { type DescFile, type DescMessage, toBinary } from "@bufbuild/protobuf";
import type { GenFile } from "@bufbuild/protobuf/codegenv2";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { ServerReflection as ReflectionV1 } from "../../gen/grpc/reflection/v1/reflection_pb.ts";
import { ServerReflection as ReflectionV1Alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.ts";

/** gRPC status codes used in reflection error responses. */
const NOT_FOUND = 5;
const INVALID_ARGUMENT = 3;

/** The symbol tables reflection answers from. */
export interface ReflectionIndex {
  /** Names of the services listed by `list_services`. */
  services: string[];
  /** File by file name, for every file and import. */
  files: Map<string, DescFile>;
  /** File declaring a fully-qualified symbol (message, enum, service, method, extension). */
  symbols: Map<string, DescFile>;
  /** Extensions by extendee: number → declaring file. */
  extensions: Map<string, Map<number, DescFile>>;
}

/** Indexes `files` (and everything they import); `services` are the names to list. */
export function createReflectionIndex(files: readonly (DescFile | GenFile)[], services: string[]): ReflectionIndex {
  const index: ReflectionIndex = {
    services: [...services].sort(),
    files: new Map(),
    symbols: new Map(),
    extensions: new Map(),
  };
  const addMessage = (m: DescMessage, file: DescFile): void => {
    index.symbols.set(m.typeName, file);
    for (const e of m.nestedEnums) index.symbols.set(e.typeName, file);
    for (const n of m.nestedMessages) addMessage(n, file);
    for (const x of m.nestedExtensions) {
      index.symbols.set(x.typeName, file);
      const byNum = index.extensions.get(x.extendee.typeName) ?? new Map<number, DescFile>();
      byNum.set(x.number, file);
      index.extensions.set(x.extendee.typeName, byNum);
    }
  };
  const visit = (file: DescFile): void => {
    if (index.files.has(file.name)) return;
    index.files.set(file.name, file);
    for (const dep of file.dependencies) visit(dep);
    for (const m of file.messages) addMessage(m, file);
    for (const e of file.enums) index.symbols.set(e.typeName, file);
    for (const s of file.services) {
      index.symbols.set(s.typeName, file);
      for (const m of s.methods) index.symbols.set(`${s.typeName}.${m.name}`, file);
    }
    for (const x of file.extensions) {
      index.symbols.set(x.typeName, file);
      const byNum = index.extensions.get(x.extendee.typeName) ?? new Map<number, DescFile>();
      byNum.set(x.number, file);
      index.extensions.set(x.extendee.typeName, byNum);
    }
  };
  for (const f of files) visit(f);
  return index;
}

/** The file and its transitive imports, dependencies first, each once per stream. */
function fileWithDeps(file: DescFile, sent: Set<string>): Uint8Array[] {
  const out: Uint8Array[] = [];
  const visit = (f: DescFile): void => {
    if (sent.has(f.name)) return;
    sent.add(f.name);
    for (const d of f.dependencies) visit(d);
    out.push(toBinary(FileDescriptorProtoSchema, f.proto));
  };
  // The requested file itself is always sent, even when sent before on this stream.
  sent.delete(file.name);
  visit(file);
  return out.reverse();
}

type Req = {
  host: string;
  messageRequest:
    | { case: "fileByFilename" | "fileContainingSymbol" | "allExtensionNumbersOfType"; value: string }
    | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
    | { case: "listServices"; value: string }
    | { case: undefined; value?: undefined };
};

/** Computes the response body (the `message_response` oneof) for one request. */
function answer(index: ReflectionIndex, req: Req, sent: Set<string>) {
  const notFound = (what: string) => ({
    case: "errorResponse" as const,
    value: { errorCode: NOT_FOUND, errorMessage: `${what} not found` },
  });
  const files = (f: DescFile | undefined, what: string) =>
    f === undefined
      ? notFound(what)
      : { case: "fileDescriptorResponse" as const, value: { fileDescriptorProto: fileWithDeps(f, sent) } };
  const r = req.messageRequest;
  switch (r.case) {
    case "listServices":
      return { case: "listServicesResponse" as const, value: { service: index.services.map((name) => ({ name })) } };
    case "fileByFilename":
      return files(index.files.get(r.value), `file ${r.value}`);
    case "fileContainingSymbol":
      return files(index.symbols.get(r.value.replace(/^\./, "")), `symbol ${r.value}`);
    case "fileContainingExtension":
      return files(
        index.extensions.get(r.value.containingType)?.get(r.value.extensionNumber),
        `extension ${r.value.extensionNumber} of ${r.value.containingType}`,
      );
    case "allExtensionNumbersOfType": {
      const nums = index.extensions.get(r.value);
      if (nums === undefined && !index.symbols.has(r.value)) return notFound(`type ${r.value}`);
      return {
        case: "allExtensionNumbersResponse" as const,
        value: { baseTypeName: r.value, extensionNumber: [...(nums?.keys() ?? [])].sort((a, b) => a - b) },
      };
    }
    default:
      return {
        case: "errorResponse" as const,
        value: { errorCode: INVALID_ARGUMENT, errorMessage: "empty reflection request" },
      };
  }
}

function impl(index: ReflectionIndex) {
  return {
    async *serverReflectionInfo(requests: AsyncIterable<Req>) {
      const sent = new Set<string>();
      for await (const req of requests) {
        yield { validHost: req.host, originalRequest: req, messageResponse: answer(index, req, sent) };
      }
    },
  };
}

/** Reflection v1 implementation. */
export function createReflectionV1(index: ReflectionIndex): ServiceImpl<typeof ReflectionV1> {
  return impl(index) as unknown as ServiceImpl<typeof ReflectionV1>;
}

/** Reflection v1alpha implementation (same messages in the older package). */
export function createReflectionV1Alpha(index: ReflectionIndex): ServiceImpl<typeof ReflectionV1Alpha> {
  return impl(index) as unknown as ServiceImpl<typeof ReflectionV1Alpha>;
}

export { ReflectionV1, ReflectionV1Alpha };
