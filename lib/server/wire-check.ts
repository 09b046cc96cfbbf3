/**
 * Wire types checked against the contract before a binary request is decoded.
 *
 * protobuf-es reads a declared field by its declared type whatever wire type the bytes carry (a
 * fixed64 where a string is declared reads as an empty string), so a malformed message could be
 * accepted — and acted on. {@link checkWireTypes} walks the encoded message once (no values are
 * decoded) and names the first field whose wire type its declaration cannot have; unknown fields
 * are skipped, as protobuf-es keeps them.
 */
import { type DescField, type DescMessage, ScalarType } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

/** Deepest nesting walked (protobuf-es' own recursion limit). */
const maxDepth = 100;

function scalarWireType(t: ScalarType): WireType {
  switch (t) {
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return WireType.Bit64;
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return WireType.Bit32;
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return WireType.LengthDelimited;
    default:
      return WireType.Varint;
  }
}

/** Wire types a field's declaration allows. */
function allowed(f: DescField): WireType[] {
  switch (f.fieldKind) {
    case "message":
      return [f.delimitedEncoding ? WireType.StartGroup : WireType.LengthDelimited];
    case "map":
      return [WireType.LengthDelimited];
    case "enum":
      return [WireType.Varint];
    case "scalar":
      return [scalarWireType(f.scalar)];
    case "list":
      if (f.listKind === "message") return [f.delimitedEncoding ? WireType.StartGroup : WireType.LengthDelimited];
      if (f.listKind === "enum") return [WireType.Varint, WireType.LengthDelimited];
      return [...new Set([scalarWireType(f.scalar), WireType.LengthDelimited])];
  }
}

/** A message field's type when `wireType` carries its encoded message. */
function nested(f: DescField, wireType: WireType): DescMessage | undefined {
  if (wireType !== WireType.LengthDelimited) return undefined;
  if (f.fieldKind === "message" || (f.fieldKind === "list" && f.listKind === "message")) return f.message;
  return undefined;
}

/**
 * The path of the first field in `bytes` whose wire type `desc` does not allow, with what was
 * found, or undefined when every known field has a wire type its declaration allows. Throws
 * (protobuf-es' reader errors) when the bytes are truncated or malformed.
 */
export function checkWireTypes(desc: DescMessage, bytes: Uint8Array): string | undefined {
  const walk = (m: DescMessage, reader: BinaryReader, end: number, path: string, depth: number): string | undefined => {
    if (depth > maxDepth) throw new Error(`nested deeper than ${maxDepth} messages`);
    while (reader.pos < end) {
      const [no, wireType] = reader.tag();
      const f = m.fields.find((x) => x.number === no);
      if (f === undefined) {
        reader.skip(wireType, no);
        continue;
      }
      const at = path === "" ? f.name : `${path}.${f.name}`;
      if (!allowed(f).includes(wireType)) return `${at} (wire type ${WireType[wireType]})`;
      const child = nested(f, wireType);
      if (child === undefined) {
        reader.skip(wireType, no);
        continue;
      }
      const len = reader.uint32();
      const stop = reader.pos + len;
      if (stop > end) throw new Error(`${at}: length ${len} runs past the end of its message`);
      const found = walk(child, reader, stop, at, depth + 1);
      if (found !== undefined) return found;
      reader.pos = stop;
    }
    return undefined;
  };
  const reader = new BinaryReader(bytes);
  return walk(desc, reader, reader.len, "", 0);
}
