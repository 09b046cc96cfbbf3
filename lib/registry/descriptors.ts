/**
 * Descriptor helpers with no dependency on generated code (the code generator itself uses them).
 */
import type { DescFile } from "@bufbuild/protobuf";

/** `files` and everything they import, each once, dependencies before dependents. */
export function withDependencies(...files: DescFile[]): DescFile[] {
  const seen = new Set<string>();
  const out: DescFile[] = [];
  const visit = (f: DescFile): void => {
    if (seen.has(f.name)) return;
    seen.add(f.name);
    for (const d of f.dependencies) visit(d);
    out.push(f);
  };
  for (const f of files) visit(f);
  return out;
}
