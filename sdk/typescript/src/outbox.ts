// The outbox (Node): at-least-once delivery across crashes, in the file layout every FLK SDK
// shares (Rust, Python, Go: an outbox left by one can be drained by another).
//
// `outbox.log`: JSON lines, each fsync'd: {"op":"put","seq":N,"body":"<PCS JSON>"} (written
// ahead), {"op":"ack","seq":N,"status":S} (answered for good), and after a compaction a first
// line {"op":"seq","seq":M} keeping the highest sequence number used. A torn last line is
// ignored and cut off when opened; other unreadable lines are skipped. The log is rewritten
// with only the pending entries (temp file, fsync, rename, directory fsync) at open and when
// acknowledgements outnumber pending entries. `dead-letter.jsonl` receives permanent refusals
// ({"seq","http_status","answer","body"}, fsync'd before the entry is acknowledged). Node has no
// flock: unlike the Rust and Python outboxes, this one does not keep other processes out.

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
      const end = text.lastIndexOf("\n"); // after it: a torn append, dropped by compact()
      for (const line of end < 0 ? [] : text.slice(0, end).split("\n")) {
        let rec: any;
        try {
          rec = JSON.parse(line);
        } catch {
          continue; // a torn line followed by later appends
        }
        const seq = rec?.seq;
        if (!Number.isSafeInteger(seq)) continue;
        if (rec.op === "put" && typeof rec.body === "string") o.pending.set(seq, rec.body);
        else if (rec.op === "ack") o.pending.delete(seq);
        o.nextSeq = Math.max(o.nextSeq, seq + 1);
      }
    }
    o.compact();
    return o;
  }

  get deadLetterPath(): string {
    return join(this.dir, "dead-letter.jsonl");
  }

  /** The next sequence number enqueue() will use. */
  get next(): number {
    return this.nextSeq;
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
    this.append(`${JSON.stringify({ op: "put", seq, body })}\n`);
    this.pending.set(seq, body);
    return seq;
  }

  /** Pending entries, oldest first. */
  entries(): OutboxEntry[] {
    return [...this.pending].sort((a, b) => a[0] - b[0]).map(([seq, body]) => ({ seq, body }));
  }

  /** Records that `seq` was answered for good (fsync'd), with the answer's status if known. */
  ack(seq: number, status?: number): void {
    if (!this.pending.delete(seq)) return;
    this.append(`${JSON.stringify(status === undefined ? { op: "ack", seq } : { op: "ack", seq, status })}\n`);
    this.acked++;
    if (this.acked >= 64 && this.acked > this.pending.size) this.compact();
  }

  /** Moves `seq` to the dead-letter file (fsync'd), then acknowledges it. */
  deadLetter(seq: number, a: Answer): void {
    const body = this.pending.get(seq);
    if (body === undefined) return;
    const fd = openSync(this.deadLetterPath, "a");
    try {
      writeSync(
        fd,
        `${JSON.stringify({ seq, http_status: a.http_status, answer: a.body, body })}\n`,
      );
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    this.ack(seq, a.http_status);
  }

  /** Rewrites the log with only the pending entries (atomic rename, fsync'd). */
  compact(): void {
    const tmp = join(this.dir, "outbox.log.tmp");
    const fd = openSync(tmp, "w");
    try {
      // The highest sequence number used survives, so numbers never repeat.
      let text = `${JSON.stringify({ op: "seq", seq: this.nextSeq - 1 })}\n`;
      for (const e of this.entries()) text += `${JSON.stringify({ op: "put", seq: e.seq, body: e.body })}\n`;
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
        this.ack(e.seq, a.http_status);
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
