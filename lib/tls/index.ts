/**
 * `mesh certs`: a development CA and one certificate per server (and per client identity), made
 * with the openssl CLI. Certificates carry SANs for localhost, 127.0.0.1 and the given host names.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Options of {@link createDevCertificates}. */
export interface DevCertOptions {
  /** Output directory. */
  dir: string;
  /** Identities to issue certificates for (server names and client names). */
  identities: string[];
  /** Extra DNS names / IPs for every certificate. */
  hosts?: string[];
  /** Validity in days. */
  days?: number;
}

/** openssl arguments for a new unencrypted P-256 key. */
const newP256Key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

function openssl(args: string[]): void {
  try {
    execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT")
      throw new Error("openssl not found: install it (apt-get install openssl)");
    throw new Error(`openssl ${args[0]} failed: ${String((err as { stderr?: Buffer }).stderr ?? err)}`);
  }
}

/** Creates the CA (once) and a key + certificate per identity; returns the files written. */
export function createDevCertificates(opts: DevCertOptions): string[] {
  const { dir } = opts;
  const days = String(opts.days ?? 825);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const written: string[] = [];
  const caKey = join(dir, "ca.key");
  const caCrt = join(dir, "ca.crt");
  if (!existsSync(caCrt)) {
    openssl([
      "req",
      "-x509",
      ...newP256Key,
      "-keyout",
      caKey,
      "-out",
      caCrt,
      "-days",
      days,
      "-subj",
      "/O=Marketing Mesh/CN=Marketing Mesh dev CA",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    written.push(caKey, caCrt);
  }
  const hosts = ["localhost", "127.0.0.1", "::1", ...(opts.hosts ?? [])];
  for (const id of opts.identities) {
    const key = join(dir, `${id}.key`);
    const csr = join(dir, `${id}.csr`);
    const crt = join(dir, `${id}.crt`);
    const ext = join(dir, `${id}.ext`);
    const san = [id, ...hosts].map((h) => (/^[\d.]+$|:/.test(h) ? `IP:${h}` : `DNS:${h}`)).join(",");
    writeFileSync(
      ext,
      `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n`,
    );
    openssl(["req", ...newP256Key, "-keyout", key, "-out", csr, "-subj", `/O=Marketing Mesh/CN=${id}`]);
    openssl([
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      caCrt,
      "-CAkey",
      caKey,
      "-CAcreateserial",
      "-out",
      crt,
      "-days",
      days,
      "-extfile",
      ext,
    ]);
    written.push(key, crt);
  }
  return written;
}
