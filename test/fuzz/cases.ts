/**
 * Bad input generated from a method's input descriptor and its protovalidate rules: wrong JSON
 * types, unknown fields and enum names, lists and strings one past their bounds, strings and
 * lists that reach the message size limit, malformed UTF-8, malformed protobuf and envelopes,
 * deep nesting, bodies far over the limit and compression bombs — plus a few valid-shaped but odd
 * messages (empty, all defaults). Mutations start from the skill's `example` request (which passes
 * validation), so a case breaks one thing at a time. Cases are cheap to list and build their
 * bodies only when sent.
 */
import { gzipSync } from "node:zlib";
import {
  type DescField,
  type DescMessage,
  fromJson,
  getOption,
  hasOption,
  type JsonObject,
  type JsonValue,
  type Registry,
  ScalarType,
  toBinary,
} from "@bufbuild/protobuf";
import { type FieldRules, field as fieldRulesExt } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { envelope, enveloped, type WireRequest, type WireTransport } from "./wire.ts";

/** What a case tests, which decides what it may be answered. */
export type CaseClass = "malformed" | "contract" | "size" | "odd";

/** The parts of a request a case decides. */
export type CaseBody = Pick<WireRequest, "payload" | "rawBody" | "envelopeFlags" | "headers">;

/** One generated case of one RPC. */
export interface FuzzCase {
  /** `<kind>` or `<kind>:<field path>`, e.g. `max-len+1:keywords[0].keyword`. */
  name: string;
  cls: CaseClass;
  transports: readonly WireTransport[];
  /** Over about 1 MiB on the wire: fast mode samples these apart. */
  big: boolean;
  /** Outcomes that are right for this case (`ok` or Connect code strings). */
  allowed: ReadonlySet<string>;
  /** Builds the body for one transport (big bodies are built only when sent). */
  build(t: WireTransport): CaseBody;
}

/** Only INVALID_ARGUMENT: the body is not a valid request. */
export const rejectInvalid: ReadonlySet<string> = new Set(["invalid_argument"]);
/** A contract bound was broken (RESOURCE_EXHAUSTED when the body is also over the size limit). */
export const rejectContract: ReadonlySet<string> = new Set(["invalid_argument", "resource_exhausted"]);
/** The body is over the size limit. */
export const rejectSize: ReadonlySet<string> = new Set(["resource_exhausted"]);
/** Decompresses past the size limit, or is not valid compressed data. */
export const rejectCompressed: ReadonlySet<string> = new Set(["resource_exhausted", "invalid_argument"]);
/** What a handler may answer a valid-shaped request: the skill decides. */
export const handlerAnswers: ReadonlySet<string> = new Set([
  "ok",
  "invalid_argument",
  "failed_precondition",
  "not_found",
  "already_exists",
  "out_of_range",
  "resource_exhausted",
  "unimplemented",
]);
/** An unsupported compression: the Connect and gRPC specifications say UNIMPLEMENTED. */
export const rejectEncoding: ReadonlySet<string> = new Set(["unimplemented", "invalid_argument"]);

/** Anything at or over this many bytes counts as big. */
export const bigBytes = 1 << 20;

const jsonTransports: readonly WireTransport[] = ["connect-json", "grpc-json"];
const protoTransports: readonly WireTransport[] = ["connect-proto", "grpc-proto"];
const messageTransports: readonly WireTransport[] = ["connect-json", "connect-proto", "grpc-proto"];

const utf8 = new TextEncoder();
const wkt = (m: DescMessage) => m.typeName.startsWith("google.protobuf.");
const anyJson = new Set(["google.protobuf.Value", "google.protobuf.ListValue", "google.protobuf.Struct"]);

/** A field reached from the request message: its parents (element 0 of lists) and its rules. */
export interface FieldSite {
  field: DescField;
  parents: { field: DescField; intoList: boolean }[];
  /** `keywords[0].keyword`. */
  label: string;
  rules: FieldRules | undefined;
}

function rulesOf(f: DescField): FieldRules | undefined {
  return hasOption(f, fieldRulesExt) ? getOption(f, fieldRulesExt) : undefined;
}

/** Every field of `desc` and of its messages (lists through element 0), up to `maxDepth` deep, no type twice on a path. */
export function fieldSites(desc: DescMessage, maxDepth = 3): FieldSite[] {
  const out: FieldSite[] = [];
  const walk = (m: DescMessage, parents: FieldSite["parents"], label: string, seen: Set<string>, depth: number) => {
    for (const f of m.fields) {
      const own = `${label}${f.jsonName}`;
      out.push({ field: f, parents, label: own, rules: rulesOf(f) });
      const child =
        f.fieldKind === "message"
          ? f.message
          : f.fieldKind === "list" && f.listKind === "message"
            ? f.message
            : undefined;
      if (child === undefined || wkt(child) || seen.has(child.typeName) || depth >= maxDepth) continue;
      const intoList = f.fieldKind === "list";
      walk(
        child,
        [...parents, { field: f, intoList }],
        `${own}${intoList ? "[0]" : ""}.`,
        new Set([...seen, child.typeName]),
        depth + 1,
      );
    }
  };
  walk(desc, [], "", new Set([desc.typeName]), 0);
  return out;
}

const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

/** Puts `f` under its JSON name and clears the other members of its oneof. */
function claim(obj: JsonObject, f: DescField): void {
  if (f.name !== f.jsonName && f.name in obj) delete obj[f.name];
  for (const m of f.oneof?.fields ?? []) {
    if (m === f) continue;
    delete obj[m.jsonName];
    delete obj[m.name];
  }
}

/** A copy of `base` with the field at `site` set to `value` (creating parents as needed). */
export function setAt(base: JsonObject, site: FieldSite, value: JsonValue): JsonObject {
  const out = structuredClone(base);
  let obj = out;
  for (const p of site.parents) {
    claim(obj, p.field);
    const key = p.field.jsonName;
    if (p.intoList) {
      let list = obj[key];
      if (!Array.isArray(list) || list.length === 0) list = obj[key] = [{}];
      if (!isObject(list[0])) list[0] = {};
      obj = list[0] as JsonObject;
    } else {
      if (!isObject(obj[key])) obj[key] = {};
      obj = obj[key] as JsonObject;
    }
  }
  claim(obj, site.field);
  obj[site.field.jsonName] = value;
  return out;
}

/** The value at `site` in `base`, if there is one. */
function valueAt(base: JsonObject, site: FieldSite): JsonValue | undefined {
  let obj: JsonValue | undefined = base;
  for (const p of site.parents) {
    if (!isObject(obj)) return undefined;
    obj = obj[p.field.jsonName] ?? obj[p.field.name];
    if (p.intoList) obj = Array.isArray(obj) ? obj[0] : undefined;
  }
  return isObject(obj) ? (obj[site.field.jsonName] ?? obj[site.field.name]) : undefined;
}

function is64(t: ScalarType): boolean {
  return [ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64].includes(t);
}

/** A JSON value of the wrong type for `f`, or undefined where every JSON value is acceptable. */
function wrongType(f: DescField): JsonValue | undefined {
  if (f.fieldKind === "list") return { fuzz: 1 };
  if (f.fieldKind === "map") return [1, 2];
  if (f.fieldKind === "enum") return { fuzz: 1 };
  if (f.fieldKind === "message") return anyJson.has(f.message.typeName) ? undefined : [1, 2];
  switch (f.scalar) {
    case ScalarType.STRING:
      return 12345;
    case ScalarType.BOOL:
      return "yes";
    case ScalarType.BYTES:
      return 12;
    default:
      return is64(f.scalar) ? true : { fuzz: 1 };
  }
}

/** The zero value of a singular field in JSON. */
function zeroOf(f: DescField): JsonValue {
  if (f.fieldKind === "enum" || (f.fieldKind === "list" && f.listKind === "enum")) {
    return (f.enum.values[0]?.name ?? 0) as JsonValue;
  }
  if (f.fieldKind === "message" || (f.fieldKind === "list" && f.listKind === "message")) {
    const t = f.message.typeName;
    if (t === "google.protobuf.Timestamp") return "1970-01-01T00:00:00Z";
    if (t === "google.protobuf.Duration") return "0s";
    if (t === "google.protobuf.FieldMask") return "";
    if (t === "google.protobuf.Any") return {};
    if (t === "google.protobuf.Value") return null;
    if (t.startsWith("google.protobuf.") && t.endsWith("Value")) return null;
    return {};
  }
  const s = (f as { scalar: ScalarType }).scalar;
  if (s === ScalarType.STRING || s === ScalarType.BYTES) return "";
  if (s === ScalarType.BOOL) return false;
  return is64(s) ? "0" : 0;
}

/** One list element for `f` (a list): the base's first element when it has one. */
function elementOf(base: JsonObject, site: FieldSite): JsonValue {
  const existing = valueAt(base, site);
  if (Array.isArray(existing) && existing.length > 0) return existing[0] as JsonValue;
  const f = site.field;
  if (f.fieldKind === "list" && f.listKind === "scalar") {
    if (f.scalar === ScalarType.STRING) return "a";
    if (f.scalar === ScalarType.BYTES) return "YQ==";
    if (f.scalar === ScalarType.BOOL) return true;
    return is64(f.scalar) ? "1" : 1;
  }
  return zeroOf(f);
}

/** Encodes JSON as the request message in binary, or undefined when it is not a valid message in JSON. */
function toProto(desc: DescMessage, json: JsonValue, registry: Registry): Uint8Array | undefined {
  try {
    return toBinary(desc, fromJson(desc, json, { registry }), { writeUnknownFields: true });
  } catch {
    return undefined;
  }
}

/** A varint. */
function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

const tag = (field: number, wire: number) => varint(field * 8 + wire);

/** Field numbers 19000–19999 are reserved by protobuf: never a declared field. */
const neverDeclared = 19_999;

/** Malformed protobuf bodies (the first fields' numbers are used so the reader meets them). */
function malformedProto(desc: DescMessage): { name: string; bytes: Uint8Array }[] {
  const open = Buffer.from(tag(neverDeclared, 3));
  const close = Buffer.from(tag(neverDeclared, 4));
  const deep = 100_000;
  const groups = Buffer.concat([Buffer.alloc(open.length * deep, open), Buffer.alloc(close.length * deep, close)]);
  const out = [
    { name: "truncated-varint", bytes: Uint8Array.from([0x08, 0xff]) },
    { name: "wire-type-6", bytes: Uint8Array.from([0x0e, 0x00]) },
    { name: "wire-type-7", bytes: Uint8Array.from([0x0f, 0x00]) },
    { name: "field-number-0", bytes: Uint8Array.from([0x00, 0x00]) },
    { name: "field-number-overflow", bytes: Uint8Array.from([0xf8, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00]) },
    { name: "length-overrun", bytes: Uint8Array.from([0x0a, 0x64, 0x61]) },
    { name: "length-4gib", bytes: Uint8Array.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x61]) },
    { name: "truncated-fixed64", bytes: Uint8Array.from([0x09, 0x01, 0x02]) },
    { name: "end-group-without-start", bytes: Uint8Array.from(tag(neverDeclared, 4)) },
    { name: "unterminated-group", bytes: Uint8Array.from(tag(neverDeclared, 3)) },
    { name: "deep-groups-100000", bytes: new Uint8Array(groups) },
  ];
  // A declared field with a wire type its type cannot have, followed by bytes that read as a valid
  // value when the wire type is ignored (so a reader that ignores it accepts the message).
  const fixed32 = [ScalarType.FIXED32, ScalarType.SFIXED32, ScalarType.FLOAT];
  const fixed64 = [ScalarType.FIXED64, ScalarType.SFIXED64, ScalarType.DOUBLE];
  for (const f of desc.fields.slice(0, 8)) {
    let bytes: number[];
    const scalar = f.fieldKind === "scalar" || f.fieldKind === "list" ? f.scalar : undefined;
    if (f.fieldKind === "message" || f.fieldKind === "map" || (f.fieldKind === "list" && f.listKind === "message")) {
      bytes = [...tag(f.number, 0), 0x00];
    } else if (scalar === ScalarType.STRING || scalar === ScalarType.BYTES) {
      bytes = [...tag(f.number, 0), 0x01, 0x61];
    } else if (scalar !== undefined && fixed32.includes(scalar)) {
      bytes = [...tag(f.number, f.fieldKind === "list" ? 0 : 2), 0, 0, 0, 0];
    } else if (scalar !== undefined && fixed64.includes(scalar)) {
      bytes = [...tag(f.number, f.fieldKind === "list" ? 0 : 2), 0, 0, 0, 0, 0, 0, 0, 0];
    } else {
      // varint kinds (ints, bool, enums)
      bytes = [...tag(f.number, f.fieldKind === "list" ? 5 : 2), 0x01];
    }
    out.push({ name: `wire-type-mismatch:${f.jsonName}`, bytes: Uint8Array.from(bytes) });
  }
  return out;
}

/** Bytes that are not UTF-8 (a lone continuation byte, an overlong form, a surrogate, 0xFF). */
const badUtf8 = Uint8Array.from([0x80, 0xc0, 0xaf, 0xed, 0xa0, 0x80, 0xff, 0xfe]);
const marker = "FUZZ-UTF8-MARKER";

/** `bytes` with the first occurrence of `marker` replaced by invalid UTF-8 of the same length. */
function spliceBadUtf8(bytes: Uint8Array): Uint8Array | undefined {
  const at = Buffer.from(bytes).indexOf(marker);
  if (at < 0) return undefined;
  const out = Uint8Array.from(bytes);
  for (let i = 0; i < marker.length; i++) out[at + i] = badUtf8[i % badUtf8.length] as number;
  return out;
}

const memo = new Map<string, Uint8Array>();
function memoised(key: string, make: () => Uint8Array): Uint8Array {
  let v = memo.get(key);
  if (v === undefined) {
    v = make();
    memo.set(key, v);
  }
  return v;
}

/** The longest string the rules of `site` allow (Infinity when they set no bound). */
export function stringBound(site: FieldSite): number {
  const r = site.rules?.type;
  if (r?.case !== "string") return Infinity;
  const v = r.value;
  const bounds: number[] = [];
  if (v.maxLen > 0n) bounds.push(Number(v.maxLen));
  if (v.maxBytes > 0n) bounds.push(Number(v.maxBytes));
  if (v.len > 0n) bounds.push(Number(v.len));
  if (v.lenBytes > 0n) bounds.push(Number(v.lenBytes));
  if (v.in.length > 0) bounds.push(Math.max(...v.in.map((x) => x.length)));
  if (v.const !== "") bounds.push(v.const.length);
  switch (v.wellKnown.case) {
    case "uuid":
      bounds.push(36);
      break;
    case "tuuid":
      bounds.push(32);
      break;
    case "ulid":
      bounds.push(26);
      break;
    case "hostAndPort":
      bounds.push(260);
      break;
    case "hostname":
    case "address":
      bounds.push(253);
      break;
    case "ip":
    case "ipv4":
    case "ipv6":
    case "ipWithPrefixlen":
    case "ipv4WithPrefixlen":
    case "ipv6WithPrefixlen":
    case "ipPrefix":
    case "ipv4Prefix":
    case "ipv6Prefix":
      bounds.push(64);
      break;
    default:
      break;
  }
  return bounds.length > 0 ? Math.min(...bounds) : Infinity;
}

/** Labels of the string fields of `desc` whose rules set no length bound (the conventions want one on every input field). */
export function unboundedStrings(desc: DescMessage): string[] {
  return fieldSites(desc)
    .filter(
      (s) => (s.field.fieldKind === "scalar" || s.field.fieldKind === "list") && s.field.scalar === ScalarType.STRING,
    )
    .filter((s) => {
      if (s.field.fieldKind === "list") {
        const items = s.rules?.type.case === "repeated" ? s.rules.type.value.items : undefined;
        return stringBound({ ...s, rules: items }) === Infinity;
      }
      return stringBound(s) === Infinity;
    })
    .map((s) => s.label);
}

/** What the cases of one method need to know. */
export interface CaseContext {
  input: DescMessage;
  /** The request the mutations start from (the skill's example, else `{}`). */
  base: JsonObject;
  registry: Registry;
  /** The servers' maximum message size. */
  maxBytes: number;
  /** Whether the method streams (enveloped on Connect too). */
  streaming: boolean;
}

/** Every case of a method. */
export function generateCases(ctx: CaseContext): FuzzCase[] {
  const { input, base, registry, maxBytes } = ctx;
  const out: FuzzCase[] = [];
  const sites = fieldSites(input);
  const text = (v: JsonValue) => utf8.encode(JSON.stringify(v));

  /** A JSON-only case (sent as Connect JSON and gRPC with its JSON codec). */
  const jsonCase = (name: string, cls: CaseClass, allowed: ReadonlySet<string>, body: () => Uint8Array, big = false) =>
    out.push({ name, cls, allowed, big, transports: jsonTransports, build: () => ({ payload: body() }) });
  /** A valid-in-JSON message, sent as JSON and as binary. */
  const messageCase = (
    name: string,
    cls: CaseClass,
    allowed: ReadonlySet<string>,
    json: () => JsonValue,
    big = false,
  ) => {
    let cached: { json: Uint8Array; proto: Uint8Array | undefined } | undefined;
    const bodies = () => {
      if (cached === undefined) {
        const v = json();
        cached = { json: text(v), proto: toProto(input, v, registry) };
      }
      return cached;
    };
    out.push({
      name,
      cls,
      allowed,
      big,
      transports: messageTransports,
      build: (t) => {
        // Big bodies are rebuilt per call rather than kept for the whole run.
        const b = big ? { json: text(json()), proto: undefined } : bodies();
        const payload = t.endsWith("json") ? b.json : (b.proto ?? (big ? toProto(input, json(), registry) : undefined));
        if (payload === undefined) throw new Error(`case ${name} has no ${t} body`);
        return { payload };
      },
    });
  };

  // Odd but valid-shaped messages: the handler decides.
  messageCase("empty", "odd", handlerAnswers, () => ({}));
  const defaults: JsonObject = {};
  for (const f of input.fields) {
    if (f.oneof && f.oneof.fields[0] !== f) continue;
    defaults[f.jsonName] = f.fieldKind === "list" ? [zeroOf(f)] : f.fieldKind === "map" ? {} : zeroOf(f);
  }
  messageCase("all-defaults", "odd", handlerAnswers, () => defaults);

  // JSON that is not a request message.
  jsonCase("json-truncated", "malformed", rejectInvalid, () => utf8.encode('{"a":'));
  jsonCase("json-not-object", "malformed", rejectInvalid, () => utf8.encode("[1,2,3]"));
  jsonCase("json-number", "malformed", rejectInvalid, () => utf8.encode("42"));
  jsonCase("unknown-field", "malformed", rejectInvalid, () => text({ ...base, fuzzUnknownField: 1 }));
  const first = input.fields[0]?.jsonName ?? "fuzz";
  const deep = 100_000;
  jsonCase("deep-arrays-100000", "malformed", rejectInvalid, () =>
    utf8.encode(`{"${first}":${"[".repeat(deep)}${"]".repeat(deep)}}`),
  );
  jsonCase("deep-objects-100000", "malformed", rejectInvalid, () =>
    utf8.encode(`{"${first}":${'{"a":'.repeat(deep)}1${"}".repeat(deep)}}`),
  );

  for (const site of sites) {
    const f = site.field;
    const wrong = wrongType(f);
    if (wrong !== undefined) {
      jsonCase(`wrong-type:${site.label}`, "malformed", rejectInvalid, () => text(setAt(base, site, wrong)));
    }
    const isEnum = f.fieldKind === "enum" || (f.fieldKind === "list" && f.listKind === "enum");
    if (isEnum) {
      const bad = "FUZZ_NOT_A_VALUE";
      jsonCase(`unknown-enum:${site.label}`, "malformed", rejectInvalid, () =>
        text(setAt(base, site, f.fieldKind === "list" ? [bad] : bad)),
      );
    }
    const isString =
      (f.fieldKind === "scalar" || f.fieldKind === "list") &&
      (f as { scalar?: ScalarType }).scalar === ScalarType.STRING;
    if (isString) {
      const value = f.fieldKind === "list" ? [marker] : marker;
      const json = () => setAt(base, site, value);
      out.push({
        name: `bad-utf8:${site.label}`,
        cls: "malformed",
        allowed: rejectInvalid,
        big: false,
        transports: [...protoTransports, ...jsonTransports],
        build: (t) => {
          const v = json();
          const bytes = t.endsWith("json") ? text(v) : toProto(input, v, registry);
          const payload = bytes && spliceBadUtf8(bytes);
          if (payload === undefined) throw new Error(`no marker in ${site.label}`);
          return { payload };
        },
      });
    }
    const r = site.rules?.type;
    if (r?.case === "string" && r.value.maxLen > 0n) {
      const n = Number(r.value.maxLen) + 1;
      messageCase(
        `max-len+1:${site.label}`,
        "contract",
        rejectContract,
        () => setAt(base, site, "a".repeat(n)),
        n >= bigBytes,
      );
    }
    if (r?.case === "bytes" && r.value.maxLen > 0n) {
      const n = Number(r.value.maxLen) + 1;
      messageCase(
        `max-len+1:${site.label}`,
        "contract",
        rejectContract,
        () => setAt(base, site, Buffer.alloc(n, 0x61).toString("base64")),
        n >= bigBytes,
      );
    }
    if (f.fieldKind === "list") {
      const rep = r?.case === "repeated" ? r.value : undefined;
      const element = elementOf(base, site);
      const elementBytes = JSON.stringify(element).length + 1;
      if (rep !== undefined && rep.maxItems > 0n) {
        const n = Number(rep.maxItems) + 1;
        messageCase(
          `max-items+1:${site.label}`,
          "contract",
          rejectContract,
          () =>
            setAt(
              base,
              site,
              Array.from({ length: n }, () => element),
            ),
          n * elementBytes >= bigBytes,
        );
      } else {
        // Unbounded list: as many elements as fit in the size limit.
        const n = Math.max(1, Math.floor((maxBytes - 4096) / elementBytes));
        messageCase(
          `list-at-size-limit:${site.label}`,
          "size",
          handlerAnswers,
          () =>
            setAt(
              base,
              site,
              Array.from({ length: n }, () => element),
            ),
          true,
        );
      }
      const items = rep?.items?.type;
      if (items?.case === "string" && items.value.maxLen > 0n) {
        const n = Number(items.value.maxLen) + 1;
        messageCase(
          `item-max-len+1:${site.label}`,
          "contract",
          rejectContract,
          () => setAt(base, site, ["a".repeat(n)]),
          n >= bigBytes,
        );
      }
    }
  }

  // A string near the size limit, in the string field with the largest bound (an unbounded one first).
  const strings = sites.filter((s) => s.field.fieldKind === "scalar" && s.field.scalar === ScalarType.STRING);
  const widest = strings.sort((a, b) => stringBound(b) - stringBound(a))[0];
  if (widest !== undefined) {
    const n = maxBytes - JSON.stringify(base).length - 4096;
    messageCase(
      `huge-string:${widest.label}`,
      "size",
      stringBound(widest) < n ? rejectContract : handlerAnswers,
      () => setAt(base, widest, "a".repeat(n)),
      true,
    );
  }

  // Malformed protobuf.
  for (const m of malformedProto(input)) {
    out.push({
      name: m.name,
      cls: "malformed",
      allowed: rejectInvalid,
      big: false,
      transports: protoTransports,
      build: () => ({ payload: m.bytes }),
    });
  }

  // Far over the size limit: twice the limit, in one body.
  out.push({
    name: "body-2x-size-limit",
    cls: "size",
    allowed: rejectSize,
    big: true,
    transports: ["connect-json", "connect-proto", "grpc-proto"],
    build: (t) => {
      if (t === "connect-json") {
        const body = memoised(`json-over-${maxBytes}`, () => {
          const b = Buffer.alloc(maxBytes * 2, 0x61);
          b.write(`{"${first}":"`, 0);
          b.write('"}', b.length - 2);
          return b;
        });
        return { payload: body };
      }
      return { payload: memoised(`proto-over-${maxBytes}`, () => Buffer.alloc(maxBytes * 2, 0x08)) };
    },
  });

  // Envelope-level cases: gRPC, and Connect when the method streams.
  const framed: readonly WireTransport[] = ctx.streaming ? ["grpc-proto", "connect-proto"] : ["grpc-proto"];
  const ok = toProto(input, base, registry) ?? new Uint8Array(0);
  const frameCase = (name: string, allowed: ReadonlySet<string>, build: (t: WireTransport) => CaseBody) =>
    out.push({ name, cls: "malformed", allowed, big: false, transports: framed, build });
  frameCase("compressed-flag-without-encoding", rejectInvalid, () => ({ payload: ok, envelopeFlags: 1 }));
  frameCase("envelope-truncated", rejectInvalid, () => ({
    payload: ok,
    rawBody: Buffer.concat([Buffer.from([0, 0, 0, 0, 100]), Buffer.from([0x0a, 0x01, 0x61])]),
  }));
  frameCase("envelope-declares-2gib", rejectContract, () => ({
    payload: ok,
    rawBody: Buffer.from([0, 0x7f, 0xff, 0xff, 0xff, 0x0a, 0x01, 0x61]),
  }));
  frameCase("envelope-header-cut", rejectInvalid, () => ({ payload: ok, rawBody: Buffer.from([0, 0, 0]) }));
  if (!ctx.streaming) {
    frameCase("two-messages-for-unary", rejectInvalid, () => ({
      payload: ok,
      rawBody: Buffer.concat([envelope(0, ok), envelope(0, ok)]),
    }));
    frameCase("no-message-for-unary", rejectInvalid, () => ({ payload: ok, rawBody: new Uint8Array(0) }));
  }

  // Compression: a bomb that inflates to 4x the limit, data that is not gzip, an unknown codec.
  const bomb = () => memoised(`bomb-${maxBytes}`, () => gzipSync(Buffer.alloc(maxBytes * 4), { level: 9 }));
  const compressed = (t: WireTransport, data: Uint8Array, codec: string): CaseBody => {
    if (enveloped(t, ctx.streaming)) {
      const header = t.startsWith("grpc") ? "grpc-encoding" : "connect-content-encoding";
      return { payload: data, envelopeFlags: 1, headers: { [header]: codec } };
    }
    return { payload: data, headers: { "content-encoding": codec } };
  };
  out.push({
    name: "gzip-bomb-4x-size-limit",
    cls: "size",
    allowed: rejectCompressed,
    big: false,
    transports: ["connect-proto", "grpc-proto"],
    build: (t) => compressed(t, bomb(), "gzip"),
  });
  out.push({
    name: "gzip-garbage",
    cls: "malformed",
    allowed: rejectCompressed,
    big: false,
    transports: ["connect-proto", "grpc-proto"],
    build: (t) => compressed(t, Uint8Array.from([0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef]), "gzip"),
  });
  out.push({
    name: "unknown-encoding",
    cls: "malformed",
    allowed: rejectEncoding,
    big: false,
    transports: ["connect-proto", "grpc-proto"],
    build: (t) => compressed(t, ok, "fuzzcodec"),
  });
  return out;
}
