// The outbox (Node): at-least-once delivery across crashes, in the same file layout as the Rust
// SDK's outbox.
//
// `outbox.log` holds `A <seq> <base64 of the PCS JSON>` (added, fsync'd before sending) and
// `K <seq>` (answered for good) lines; a torn last line is ignored and cut off when opened;
// the log is rewritten with only the pending entries (temp file, fsync, rename, directory
// fsync) at open and when acknowledged records outnumber pending ones.
// `dead-letter.ndjson` receives permanent refusals (fsync'd before the entry is acknowledged).

import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";

import { answerClass, type Answer, type Client } from "./client.js";

export interface OutboxEntry {
  seq: number;
  body: string;
}

export interface DeliveryReport {
  decided: number;
  duplicates: number;
  deadLettered: number;
  pending: number;
}

export class Outbox {
  readonly dir: string;
  private fd: number;
  private readonly pending = new Map<number, string>();
  private nextSeq = 1;
  private acked = 0;

  private constructor(dir: string) {
    this.dir = dir;
    this.fd = -1;
  }

  /** Opens (or creates) the outbox in `dir`, recovering every unacknowledged entry. */
  static open(dir: string): Outbox {
    mkdirSync(dir, { recursive: true });
    const o = new Outbox(dir);
    const path = join(dir, "outbox.log");
    if (existsSync(path)) {
      const text = readFileSync(path, "utf8");
      const end = text.lastIndexOf("\n");
      for (const line of end < 0 ? [] : text.slice(0, end).split("\n")) {
        const [op, seqText, b64] = line.split(" ");
        const seq = Number(seqText);
        if (!Number.isSafeInteger(seq)) break;
        if (op === "A" && b64 !== undefined) o.pending.set(seq, Buffer.from(b64, "base64").toString("utf8"));
        else if (op === "K") o.pending.delete(seq);
        else break;
        o.nextSeq = Math.max(o.nextSeq, seq + 1);
      }
    }
    o.compact();
    return o;
  }

  get deadLetterPath(): string {
    return join(this.dir, "dead-letter.ndjson");
  }

  get size(): number {
    return this.pending.size;
  }

  private append(record: string): void {
    writeSync(this.fd, record);
    fsyncSync(this.fd);
  }

  /** Writes a PCS's JSON ahead (fsync'd); returns its sequence number. */
  enqueue(body: string): number {
    const seq = this.nextSeq++;
    this.append(`A ${seq} ${Buffer.from(body, "utf8").toString("base64")}\n`);
    this.pending.set(seq, body);
    return seq;
  }

  /** Pending entries, oldest first. */
  entries(): OutboxEntry[] {
    return [...this.pending].sort((a, b) => a[0] - b[0]).map(([seq, body]) => ({ seq, body }));
  }

  /** Records that `seq` was answered for good (fsync'd). */
  ack(seq: number): void {
    if (!this.pending.delete(seq)) return;
    this.append(`K ${seq}\n`);
    this.acked++;
    if (this.acked >= 64 && this.acked > this.pending.size) this.compact();
  }

  /** Moves `seq` to the dead-letter file (fsync'd), then acknowledges it. */
  deadLetter(seq: number, a: Answer): void {
    const body = this.pending.get(seq);
    if (body === undefined) return;
    let pcsId: string | null = null;
    try {
      pcsId = JSON.parse(body).pcs_id ?? null;
    } catch {
      /* kept as it is */
    }
    const fd = openSync(this.deadLetterPath, "a");
    try {
      writeSync(
        fd,
        `${JSON.stringify({ seq, pcs_id: pcsId, http_status: a.http_status, code: a.error_code, message: a.error_message, pcs: body })}\n`,
      );
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    this.ack(seq);
  }

  /** Rewrites the log with only the pending entries (atomic rename, fsync'd). */
  compact(): void {
    const tmp = join(this.dir, "outbox.log.tmp");
    const fd = openSync(tmp, "w");
    try {
      let text = "";
      for (const e of this.entries()) text += `A ${e.seq} ${Buffer.from(e.body, "utf8").toString("base64")}\n`;
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, join(this.dir, "outbox.log"));
    const dfd = openSync(this.dir, "r");
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = openSync(join(this.dir, "outbox.log"), "a");
    this.acked = 0;
  }

  /** Delivers every pending entry in order with the client's retries: decided answers
   * acknowledged, refusals dead-lettered; stops (rejects) at an entry that stays retryable. */
  async deliver(client: Client, onAnswer: (seq: number, a: Answer) => void | Promise<void> = () => {}): Promise<DeliveryReport> {
    const r: DeliveryReport = { decided: 0, duplicates: 0, deadLettered: 0, pending: 0 };
    for (const e of this.entries()) {
      const a = await client.submitJson(e.body);
      await onAnswer(e.seq, a);
      const cls = answerClass(a);
      if (cls === "decided") {
        this.ack(e.seq);
        r.decided++;
        if (a.duplicate) r.duplicates++;
      } else if (cls === "refused") {
        this.deadLetter(e.seq, a);
        r.deadLettered++;
      } else {
        throw new Error(`entry ${e.seq} still retryable (status ${a.http_status}) after ${client.retry.maxAttempts} attempts`);
      }
    }
    r.pending = this.pending.size;
    return r;
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
