/**
 * A real SMTP server for tests (smtp-server on an ephemeral loopback port) that keeps every message
 * it accepts, parsed with mailparser. Recipients matching `reject` are refused at RCPT TO with the
 * given reply, as a real mail server refuses an unknown mailbox.
 */
import type { AddressInfo } from "node:net";
import { type ParsedMail, simpleParser } from "mailparser";
import { SMTPServer } from "smtp-server";

/** A message the sink accepted. */
export interface ReceivedMail {
  /** Envelope sender (MAIL FROM). */
  envelopeFrom: string;
  /** Envelope recipients (RCPT TO). */
  envelopeTo: string[];
  /** The raw RFC 5322 message. */
  raw: Buffer;
  /** The parsed message. */
  parsed: ParsedMail;
}

/** A running sink. */
export interface SmtpSink {
  /** `smtp://127.0.0.1:<port>`. */
  url: string;
  /** Messages accepted so far, in order. */
  messages: ReceivedMail[];
  /** Stops the server. */
  close(): Promise<void>;
}

/** Options of {@link startSmtpSink}. */
export interface SmtpSinkOptions {
  /** Recipients to refuse at RCPT TO. */
  reject?: (address: string) => boolean;
  /** SMTP reply code of a refusal (default 550, mailbox unavailable). */
  rejectCode?: number;
}

/** Starts a sink on a free loopback port. */
export async function startSmtpSink(opts: SmtpSinkOptions = {}): Promise<SmtpSink> {
  const messages: ReceivedMail[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    onRcptTo(address, _session, callback) {
      if (opts.reject?.(address.address)) {
        const err = new Error(`5.1.1 <${address.address}>: Recipient address rejected: User unknown`);
        (err as Error & { responseCode: number }).responseCode = opts.rejectCode ?? 550;
        callback(err);
        return;
      }
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        const raw = Buffer.concat(chunks);
        simpleParser(raw)
          .then((parsed) => {
            const from = session.envelope.mailFrom;
            messages.push({
              envelopeFrom: from === false ? "" : from.address,
              envelopeTo: session.envelope.rcptTo.map((r) => r.address),
              raw,
              parsed,
            });
            callback(null);
          })
          .catch((err: Error) => callback(err));
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.on("error", reject);
    const net = server.listen(0, "127.0.0.1", () => resolve((net.address() as AddressInfo).port));
  });
  return {
    url: `smtp://127.0.0.1:${port}`,
    messages,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
