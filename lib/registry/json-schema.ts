/**
 * JSON Schema (draft 2020-12) of a protobuf message in the canonical protobuf JSON mapping,
 * including the protovalidate rules that have a JSON Schema counterpart (lengths, ranges,
 * patterns, formats, item counts, `required`). Rules without one (CEL expressions) are listed
 * under `x-protovalidate-cel` so a reader still sees them.
 */
import { type DescEnum, type DescField, type DescMessage, getOption, hasOption, ScalarType } from "@bufbuild/protobuf";
import {
  type FieldRules,
  field as fieldRules,
  message as messageRules,
} from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";

/** A JSON Schema object. */
export type JsonSchema = { [key: string]: unknown };

const wellKnown: Readonly<Record<string, JsonSchema>> = {
  "google.protobuf.Timestamp": { type: "string", format: "date-time" },
  "google.protobuf.Duration": { type: "string", pattern: "^-?[0-9]+(\\.[0-9]{1,9})?s$" },
  "google.protobuf.FieldMask": { type: "string" },
  "google.protobuf.Empty": { type: "object", additionalProperties: false },
  "google.protobuf.StringValue": { type: ["string", "null"] },
  "google.protobuf.BoolValue": { type: ["boolean", "null"] },
  "google.protobuf.Int32Value": { type: ["integer", "null"] },
  "google.protobuf.DoubleValue": { type: ["number", "null"] },
  "google.protobuf.Int64Value": { type: ["string", "integer", "null"] },
  "google.protobuf.UInt64Value": { type: ["string", "integer", "null"] },
  "google.protobuf.UInt32Value": { type: ["integer", "null"] },
  "google.protobuf.FloatValue": { type: ["number", "null"] },
  "google.protobuf.BytesValue": { type: ["string", "null"], contentEncoding: "base64" },
};

const int64Pattern = "^-?[0-9]+$";

function scalarSchema(t: ScalarType): JsonSchema {
  switch (t) {
    case ScalarType.BOOL:
      return { type: "boolean" };
    case ScalarType.STRING:
      return { type: "string" };
    case ScalarType.BYTES:
      return { type: "string", contentEncoding: "base64" };
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return { anyOf: [{ type: "number" }, { enum: ["NaN", "Infinity", "-Infinity"] }] };
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return { type: ["string", "integer"], pattern: int64Pattern };
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return { type: "integer", minimum: 0, maximum: 4294967295 };
    default:
      return { type: "integer", minimum: -2147483648, maximum: 2147483647 };
  }
}

function enumSchema(e: DescEnum): JsonSchema {
  return {
    title: e.typeName,
    anyOf: [{ type: "string", enum: e.values.map((v) => v.name) }, { type: "integer" }],
  };
}

/** Applies one field's protovalidate rules to the schema of a single value. */
function applyRules(schema: JsonSchema, rules: FieldRules | undefined): JsonSchema {
  if (rules === undefined) return schema;
  const t = rules.type;
  const out: JsonSchema = { ...schema };
  switch (t.case) {
    case "string": {
      const r = t.value;
      if (r.minLen > 0n) out.minLength = Number(r.minLen);
      if (r.maxLen > 0n) out.maxLength = Number(r.maxLen);
      if (r.len > 0n) out.minLength = out.maxLength = Number(r.len);
      if (r.pattern !== "") out.pattern = r.pattern;
      if (r.in.length > 0) out.enum = [...r.in];
      if (r.prefix !== "") out.pattern = `^${r.prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`;
      const wk = r.wellKnown;
      if (wk.case === "email") out.format = "email";
      else if (wk.case === "uri") out.format = "uri";
      else if (wk.case === "uuid") out.format = "uuid";
      else if (wk.case === "hostname") out.format = "hostname";
      else if (wk.case === "ipv4") out.format = "ipv4";
      else if (wk.case === "ipv6") out.format = "ipv6";
      break;
    }
    case "int32":
    case "int64":
    case "uint32":
    case "uint64":
    case "sint32":
    case "sint64":
    case "fixed32":
    case "fixed64":
    case "sfixed32":
    case "sfixed64":
    case "double":
    case "float": {
      const r = t.value as {
        lessThan: { case: "lt" | "lte" | undefined; value?: number | bigint };
        greaterThan: { case: "gt" | "gte" | undefined; value?: number | bigint };
      };
      if (r.lessThan.case === "lt") out.exclusiveMaximum = Number(r.lessThan.value);
      if (r.lessThan.case === "lte") out.maximum = Number(r.lessThan.value);
      if (r.greaterThan.case === "gt") out.exclusiveMinimum = Number(r.greaterThan.value);
      if (r.greaterThan.case === "gte") out.minimum = Number(r.greaterThan.value);
      break;
    }
    case "enum":
      if (t.value.notIn.includes(0)) out["x-not-unspecified"] = true;
      break;
    default:
      break;
  }
  return out;
}

/** Builds JSON Schemas for messages, sharing `$defs` between them. */
export function messageJsonSchema(root: DescMessage): JsonSchema {
  const defs: Record<string, JsonSchema> = {};
  const ref = (m: DescMessage): JsonSchema => {
    const known = wellKnown[m.typeName];
    if (known) return known;
    if (!(m.typeName in defs)) {
      defs[m.typeName] = {}; // reserve first: messages may be recursive
      defs[m.typeName] = objectSchema(m);
    }
    return { $ref: `#/$defs/${m.typeName}` };
  };
  const singular = (f: DescField & { fieldKind: "scalar" | "enum" | "message" }): JsonSchema => {
    if (f.fieldKind === "scalar") return scalarSchema(f.scalar);
    if (f.fieldKind === "enum") return enumSchema(f.enum);
    return ref(f.message);
  };
  const fieldSchema = (f: DescField): JsonSchema => {
    const rules = hasOption(f, fieldRules) ? getOption(f, fieldRules) : undefined;
    let s: JsonSchema;
    switch (f.fieldKind) {
      case "list": {
        const item =
          f.listKind === "scalar"
            ? scalarSchema(f.scalar)
            : f.listKind === "enum"
              ? enumSchema(f.enum)
              : ref(f.message);
        const r = rules?.type.case === "repeated" ? rules.type.value : undefined;
        s = { type: "array", items: applyRules(item, r?.items) };
        if (r && r.minItems > 0n) s.minItems = Number(r.minItems);
        if (r && r.maxItems > 0n) s.maxItems = Number(r.maxItems);
        if (r?.unique) s.uniqueItems = true;
        break;
      }
      case "map": {
        const value =
          f.mapKind === "scalar" ? scalarSchema(f.scalar) : f.mapKind === "enum" ? enumSchema(f.enum) : ref(f.message);
        s = { type: "object", additionalProperties: value };
        break;
      }
      default:
        s = applyRules(singular(f), rules);
    }
    return s;
  };
  function objectSchema(m: DescMessage): JsonSchema {
    const properties: Record<string, JsonSchema> = {};
    const required: string[] = [];
    for (const f of m.fields) {
      properties[f.jsonName] = fieldSchema(f);
      if (hasOption(f, fieldRules) && getOption(f, fieldRules).required) required.push(f.jsonName);
    }
    const s: JsonSchema = { type: "object", title: m.typeName, properties, additionalProperties: false };
    if (required.length > 0) s.required = required;
    const oneofs = m.oneofs.filter((o) => o.fields.length > 1);
    if (oneofs.length > 0) {
      s["x-oneof"] = Object.fromEntries(oneofs.map((o) => [o.name, o.fields.map((f) => f.jsonName)]));
    }
    if (hasOption(m, messageRules)) {
      const cel = getOption(m, messageRules).cel.map((c) => ({
        id: c.id,
        message: c.message,
        expression: c.expression,
      }));
      if (cel.length > 0) s["x-protovalidate-cel"] = cel;
    }
    return s;
  }
  const top = ref(root);
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    $id: `urn:proto:${root.typeName}`,
    ...top,
    $defs: defs,
  };
}
