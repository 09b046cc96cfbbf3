/** A small structured logger: `level msg key=value…` lines on stderr, filtered by level. */

/** Log level. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Structured logger. */
export interface Logger {
  /** Debug detail. */
  debug(msg: string, fields?: Record<string, unknown>): void;
  /** Normal operation. */
  info(msg: string, fields?: Record<string, unknown>): void;
  /** Something odd that did not fail. */
  warn(msg: string, fields?: Record<string, unknown>): void;
  /** A failure. */
  error(msg: string, fields?: Record<string, unknown>): void;
}

const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

function format(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(v.stack ?? v.message);
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return /[\s"=]/.test(s ?? "") ? JSON.stringify(s) : String(s);
}

/** Creates a logger writing to `write` (stderr by default). */
export function createLogger(
  level: LogLevel = "info",
  write: (line: string) => void = (l) => process.stderr.write(l),
): Logger {
  const emit = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
    if (order[lvl] < order[level]) return;
    const kv = fields
      ? Object.entries(fields)
          .map(([k, v]) => ` ${k}=${format(v)}`)
          .join("")
      : "";
    write(`${lvl.padEnd(5)} ${msg}${kv}\n`);
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
  };
}
