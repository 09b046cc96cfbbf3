/**
 * Builds a binary FileDescriptorSet ("image") of proto/ with Debian's protoc, without the buf
 * registry: protovalidate's descriptors come from the installed @bufbuild/protovalidate package and
 * the gRPC health / reflection / google.rpc protos from their npm packages. Nothing third-party is
 * copied into the repository; the include tree under .mesh/build holds symlinks only.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { file_buf_validate_validate } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { withDependencies } from "../lib/registry/index.ts";

/** Proto files that come from npm packages: include path → package directory. */
const packagedProtos: ReadonlyArray<{ link: string; target: string; files: string[] }> = [
  {
    link: "grpc/health",
    target: "node_modules/grpc-health-check/proto/health",
    files: ["grpc/health/v1/health.proto"],
  },
  {
    link: "grpc/reflection",
    target: "node_modules/@grpc/reflection/build/proto/grpc/reflection",
    files: ["grpc/reflection/v1/reflection.proto", "grpc/reflection/v1alpha/reflection.proto"],
  },
  {
    link: "google/rpc",
    target: "node_modules/google-proto-files/google/rpc",
    files: ["google/rpc/error_details.proto"],
  },
];

/** Options of {@link buildProtoImage}. */
export interface ProtoImageOptions {
  /** Repository root (holds proto/ and node_modules/). */
  root: string;
  /** Where to write the image. */
  out: string;
  /** Directory of the .proto sources; defaults to `<root>/proto`. */
  protoDir?: string;
  /** Also compile the packaged gRPC / google.rpc protos (needed for code generation). */
  includePackaged?: boolean;
}

/** Lists every .proto under `dir`, as paths relative to `dir`. */
export function listProtoFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.name.endsWith(".proto")) out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

/** Compiles proto/ (plus, optionally, the packaged protos) into a binary image and returns its path. */
export function buildProtoImage(opts: ProtoImageOptions): string {
  const build = join(opts.root, ".mesh", "build");
  mkdirSync(build, { recursive: true });
  const deps = join(build, "protovalidate-deps.binpb");
  const set = create(FileDescriptorSetSchema, {
    file: withDependencies(file_buf_validate_validate).map((f) => f.proto),
  });
  writeFileSync(deps, toBinary(FileDescriptorSetSchema, set));

  const include = join(build, "include");
  rmSync(include, { recursive: true, force: true });
  const packagedFiles: string[] = [];
  if (opts.includePackaged) {
    for (const p of packagedProtos) {
      const link = join(include, p.link);
      mkdirSync(dirname(link), { recursive: true });
      symlinkSync(join(opts.root, p.target), link, "dir");
      packagedFiles.push(...p.files);
    }
  }
  const protoDir = opts.protoDir ?? join(opts.root, "proto");
  const files = [...listProtoFiles(protoDir), ...packagedFiles];
  mkdirSync(dirname(opts.out), { recursive: true });
  try {
    execFileSync(
      "protoc",
      [
        `--descriptor_set_in=${deps}`,
        `-I${protoDir}`,
        ...(opts.includePackaged ? [`-I${include}`] : []),
        "--include_imports",
        "--include_source_info",
        `--descriptor_set_out=${opts.out}`,
        ...files,
      ],
      { stdio: ["ignore", "inherit", "inherit"] },
    );
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new Error("protoc not found: install Debian's protobuf-compiler (apt-get install protobuf-compiler)");
    }
    throw err;
  }
  if (!existsSync(opts.out)) throw new Error(`protoc wrote no image at ${opts.out}`);
  return opts.out;
}
