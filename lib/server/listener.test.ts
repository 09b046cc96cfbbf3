/**
 * Socket-level limits of the listening port: slow or silent clients are closed after the (short,
 * test-configured) timeouts, quiet responses are not, and connections over the per-address cap are
 * closed at once while the others are served. Plain (sniffed) and TLS ports alike.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tlsModule from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createDevCertificates } from "../tls/index.ts";
import { defaultListenLimits, type Handler, type Listener, type ListenLimits, listen } from "./listener.ts";

const CLOSED_WITHIN_MS = 5000;

/** Answers "ok" once the body is read; `/slow` answers after 1.5 s of silence. */
const handler: Handler = (req, res) => {
  if (req.url === "/slow") {
    req.resume();
    setTimeout(() => res.end("slow"), 1500);
    return;
  }
  req.resume();
  req.on("end", () => res.end("ok"));
};

const open: Listener[] = [];
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
  for (const l of open.splice(0)) {
    l.stopAccepting();
    l.destroy();
  }
});

async function start(limits: Partial<ListenLimits>, tls?: { ca: string; cert: string; key: string }): Promise<number> {
  const l = await listen(handler, "127.0.0.1", 0, tls, { ...defaultListenLimits, ...limits });
  open.push(l);
  return l.port;
}

/** A raw TCP connection; errors (resets) are expected and ignored. */
function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => resolve(s));
    s.on("error", reject);
    cleanups.push(() => s.destroy());
  }).then((s) => {
    (s as net.Socket).removeAllListeners("error");
    (s as net.Socket).on("error", () => {});
    return s as net.Socket;
  });
}

/** Resolves when the server has closed `s` (end or close); fails after `ms`. */
function closedBy(s: net.Socket | tlsModule.TLSSocket, ms = CLOSED_WITHIN_MS): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`socket still open after ${ms} ms`)), ms);
    const done = (): void => {
      clearTimeout(timer);
      resolve();
    };
    if (s.destroyed || s.readableEnded) return done();
    s.resume();
    s.once("end", done);
    s.once("close", done);
  });
}

/** GET over HTTP/1.1; resolves with the body. */
function get1(port: number, path = "/", ca?: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const mod = ca ? https : http;
    const req = mod.get(
      { host: "127.0.0.1", port, path, agent: false, ...(ca ? { ca, servername: "localhost" } : {}) },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (body += d));
        res.on("end", () => resolve(body));
      },
    );
    req.on("error", reject);
  });
}

/** One HTTP/2 request on `session`; resolves with the body. */
function request2(session: http2.ClientHttp2Session, path: string, body?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":path": path, ":method": body === undefined ? "GET" : "POST" });
    let out = "";
    stream.setEncoding("utf8");
    stream.on("data", (d: string) => (out += d));
    stream.on("end", () => resolve(out));
    stream.on("error", reject);
    stream.end(body);
  });
}

function h2connect(port: number): http2.ClientHttp2Session {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  cleanups.push(() => session.destroy());
  return session;
}

describe("listener timeouts (plain port)", () => {
  const limits = { headersTimeoutMs: 300, requestTimeoutMs: 600, idleTimeoutMs: 300 };

  it("closes a connection that never sends a byte", async () => {
    const port = await start(limits);
    const silent = await connect(port);
    await closedBy(silent);
    expect(await get1(port)).toBe("ok");
  });

  it("closes a partial HTTP/1.1 request line while a normal client keeps working", async () => {
    const port = await start(limits);
    const slow = await connect(port);
    slow.write("GET / HT");
    expect(await get1(port)).toBe("ok");
    await closedBy(slow);
    expect(await get1(port)).toBe("ok");
  });

  it("closes an HTTP/1.1 request whose body stalls", async () => {
    const port = await start(limits);
    const slow = await connect(port);
    slow.write("POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789");
    await closedBy(slow);
    expect(await get1(port)).toBe("ok");
  });

  it("closes a partial HTTP/2 preface, and a preface without SETTINGS", async () => {
    const port = await start(limits);
    const partial = await connect(port);
    partial.write("PRI * HTTP/2.0\r\n");
    const noSettings = await connect(port);
    noSettings.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    await Promise.all([closedBy(partial), closedBy(noSettings)]);
    const session = h2connect(port);
    expect(await request2(session, "/")).toBe("ok");
  });

  it("resets an HTTP/2 stream whose request body stalls, not the session", async () => {
    const port = await start(limits);
    const session = h2connect(port);
    const stalled = session.request({ ":path": "/", ":method": "POST" });
    stalled.on("error", () => {});
    stalled.write("partial");
    const rst = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("stream still open")), CLOSED_WITHIN_MS);
      stalled.on("close", () => {
        clearTimeout(timer);
        resolve(stalled.rstCode ?? -1);
      });
    });
    expect(rst).toBe(http2.constants.NGHTTP2_CANCEL);
    expect(await request2(session, "/", "body")).toBe("ok");
  });

  it("closes an idle HTTP/2 session", async () => {
    const port = await start(limits);
    const session = h2connect(port);
    expect(await request2(session, "/")).toBe("ok");
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("session still open")), CLOSED_WITHIN_MS);
      session.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  });

  it("does not cut a response that is quiet for longer than every timeout", async () => {
    const port = await start(limits);
    const session = h2connect(port);
    const [viaGet, viaPost, viaH1] = await Promise.all([
      request2(session, "/slow"),
      request2(session, "/slow", "body"),
      get1(port, "/slow"),
    ]);
    expect([viaGet, viaPost, viaH1]).toEqual(["slow", "slow", "slow"]);
  });
});

describe("per-address connection cap", () => {
  it("closes connections over the cap at once and serves the others", async () => {
    const port = await start({ maxConnectionsPerAddress: 3 });
    const first = await Promise.all([connect(port), connect(port), connect(port)]);
    const extra = await connect(port);
    await closedBy(extra, 2000);
    for (const s of first) s.write("GET / HTTP/1.1\r\nhost: x\r\n\r\n");
    const answers = await Promise.all(
      first.map(
        (s) =>
          new Promise<string>((resolve) => {
            let got = "";
            s.on("data", (d: Buffer) => {
              got += d.toString();
              if (got.endsWith("ok")) resolve(got);
            });
          }),
      ),
    );
    for (const a of answers) expect(a).toMatch(/^HTTP\/1\.1 200/);
    // A closed connection frees its place.
    first[0]?.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const again = await connect(port);
    again.write("GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let reply = "";
    again.on("data", (d: Buffer) => (reply += d.toString()));
    await closedBy(again);
    expect(reply).toMatch(/^HTTP\/1\.1 200/);
  });
});

describe("listener timeouts and cap (TLS port)", () => {
  let dir: string;
  let files: { ca: string; cert: string; key: string };
  let ca: Buffer;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "listener-tls-"));
    createDevCertificates({ dir, identities: ["content"] });
    files = { ca: join(dir, "ca.crt"), cert: join(dir, "content.crt"), key: join(dir, "content.key") };
    ca = readFileSync(files.ca);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function tlsConnect(port: number, alpn: string): Promise<tlsModule.TLSSocket> {
    return new Promise((resolve, reject) => {
      const s = tlsModule.connect({ host: "127.0.0.1", port, ca, servername: "localhost", ALPNProtocols: [alpn] });
      s.once("secureConnect", () => resolve(s));
      s.once("error", reject);
      cleanups.push(() => s.destroy());
    });
  }

  it("closes a silent TCP connection, a partial request and a partial preface", async () => {
    const port = await start({ headersTimeoutMs: 300, requestTimeoutMs: 600, idleTimeoutMs: 300 }, files);
    const silent = await connect(port);
    const partial = await tlsConnect(port, "http/1.1");
    partial.on("error", () => {});
    partial.write("GET / HT");
    const preface = await tlsConnect(port, "h2");
    preface.on("error", () => {});
    preface.write("PRI * HTTP/2.0\r\n");
    expect(await get1(port, "/", ca)).toBe("ok");
    await Promise.all([closedBy(silent), closedBy(partial), closedBy(preface)]);
    expect(await get1(port, "/", ca)).toBe("ok");
  });

  it("resets a stalled HTTP/2 request body and closes the idle session", async () => {
    const port = await start({ headersTimeoutMs: 300, requestTimeoutMs: 600, idleTimeoutMs: 300 }, files);
    const session = http2.connect(`https://127.0.0.1:${port}`, { ca, servername: "localhost" });
    session.on("error", () => {});
    cleanups.push(() => session.destroy());
    const sessionClosed = new Promise<void>((resolve) => session.once("close", resolve));
    const stalled = session.request({ ":path": "/", ":method": "POST" });
    stalled.on("error", () => {});
    stalled.write("partial");
    await new Promise<void>((resolve) => stalled.once("close", resolve));
    expect(stalled.rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
    expect(await request2(session, "/slow")).toBe("slow");
    await sessionClosed;
  });

  it("caps connections per address", async () => {
    const port = await start({ maxConnectionsPerAddress: 2 }, files);
    await Promise.all([tlsConnect(port, "http/1.1"), tlsConnect(port, "http/1.1")]);
    const extra = await connect(port);
    await closedBy(extra, 2000);
  });
});
