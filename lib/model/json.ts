/**
 * JSON replies: parsing (tolerating a Markdown code fence around the object, which chat models add
 * even in JSON mode) and a check against the subset of JSON Schema skills use for their replies:
 * `type` (one or a list), `properties`, `required`, `additionalProperties: false`, `items`, `enum`,
 * `const`, `minLength`/`maxLength`, `minimum`/`maximum`, `minItems`/`maxItems`. Other keywords are ignored.
 */
import type { JsonSchema } from "./types.ts";

/** Most problems reported for one reply. */
const maxProblems = 10;

/** The value of a JSON reply, or an error message saying why it is not JSON. */
export function parseJsonReply(text: string): { ok: true; value: unknown } | { ok: false; error: string } {
  const fenced = /^\s*```(?:json)?\s*\n([\s\S]*?)\n\s*```\s*$/i.exec(text);
  const body = fenced?.[1] ?? text;
  try {
    return { ok: true, value: JSON.parse(body) };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}

/** Problems of `value` against `schema`, each naming its JSON path; empty when it conforms. */
export function validateJson(value: unknown, schema: JsonSchema): string[] {
  const problems: string[] = [];
  check(value, schema, "$", problems);
  return problems.slice(0, maxProblems);
}

function typeOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function typeMatches(actual: string, expected: string): boolean {
  return actual === expected || (expected === "number" && actual === "integer");
}

function check(value: unknown, schema: JsonSchema, path: string, out: string[]): void {
  if (out.length >= maxProblems) return;
  const actual = typeOf(value);
  const type = schema.type;
  if (typeof type === "string" || Array.isArray(type)) {
    const allowed = (Array.isArray(type) ? type : [type]) as string[];
    if (!allowed.some((t) => typeMatches(actual, t))) {
      out.push(`${path}: expected ${allowed.join(" or ")}, got ${actual}`);
      return;
    }
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
    out.push(`${path}: must be one of ${JSON.stringify(schema.enum)}`);
  }
  if ("const" in schema && JSON.stringify(schema.const) !== JSON.stringify(value)) {
    out.push(`${path}: must be ${JSON.stringify(schema.const)}`);
  }
  if (typeof value === "string") {
    const n = [...value].length;
    if (typeof schema.minLength === "number" && n < schema.minLength)
      out.push(`${path}: shorter than ${schema.minLength}`);
    if (typeof schema.maxLength === "number" && n > schema.maxLength)
      out.push(`${path}: longer than ${schema.maxLength}`);
  }
  if (typeof value === "number") {
    if (typeof schema.minimum === "number" && value < schema.minimum) out.push(`${path}: below ${schema.minimum}`);
    if (typeof schema.maximum === "number" && value > schema.maximum) out.push(`${path}: above ${schema.maximum}`);
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === "number" && value.length < schema.minItems) {
      out.push(`${path}: fewer than ${schema.minItems} items`);
    }
    if (typeof schema.maxItems === "number" && value.length > schema.maxItems) {
      out.push(`${path}: more than ${schema.maxItems} items`);
    }
    const items = schema.items;
    if (items !== null && typeof items === "object" && !Array.isArray(items)) {
      value.forEach((v, i) => {
        check(v, items as JsonSchema, `${path}[${i}]`, out);
      });
    }
  }
  if (actual === "object") {
    const obj = value as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
    if (Array.isArray(schema.required)) {
      for (const key of schema.required as string[]) if (!(key in obj)) out.push(`${path}.${key}: required`);
    }
    for (const [key, v] of Object.entries(obj)) {
      const sub = props[key];
      if (sub !== undefined) check(v, sub, `${path}.${key}`, out);
      else if (schema.additionalProperties === false) out.push(`${path}.${key}: not allowed`);
    }
  }
}
