// Submitting PCS over REST (`POST /v1/pcs/submit`) with exponential backoff and full jitter
// that honours Retry-After, and reading outcomes and audit proofs with the tenant's API token.
// Uses the runtime's fetch (Node 20+, browsers).

import { toJson } from "./canonical.js";

/** What a sender does with an answer. */
export type AnswerClass = "decided" | "refused" | "retryable";

export interface Answer {
  http_status: number;
  outcome: string | null;
  pcs_id: string | null;
  duplicate: boolean;
  reason_code: string | null;
  error_code: string | null;
  error_message: string | null;
  /** Retry-After, in milliseconds. */
  retry_after_ms: number | null;
  body: any;
}

/** 200/202 decided (duplicates included); 408/429/5xx retryable; other statuses refused. */
export function answerClass(a: Answer): AnswerClass {
  if (a.http_status === 200 || a.http_status === 202) return "decided";
  if (a.http_status === 408 || a.http_status === 429 || a.http_status >= 500) return "retryable";
  return "refused";
}

export interface RetryPolicy {
  /** Attempts in total, the first included. */
  maxAttempts: number;
  baseMs: number;
  capMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 8, baseMs: 100, capMs: 10_000 };

/** Full jitter: uniform in [0, min(cap, base * 2^retry)], never below Retry-After. */
export function backoffDelay(p: RetryPolicy, retry: number, retryAfterMs: number | null = null): number {
  const bound = Math.min(p.capMs, p.baseMs * 2 ** Math.min(retry, 30));
  const jitter = Math.random() * bound;
  return retryAfterMs == null ? jitter : Math.max(jitter, retryAfterMs);
}

/** Retry-After as milliseconds (seconds or an HTTP date). */
export function parseRetryAfter(v: string | null): number | null {
  if (v == null) return null;
  if (/^\s*\d+\s*$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : Math.max(0, t - Date.now());
}

export interface ClientOptions {
  /** The gateway, e.g. http://127.0.0.1:8080. */
  baseUrl: string;
  tenantId?: string;
  /** The tenant's API token, for reads. */
  apiToken?: string;
  retry?: RetryPolicy;
  /** Per-request timeout (ms). */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

export class Client {
  readonly baseUrl: string;
  readonly tenantId: string;
  readonly retry: RetryPolicy;
  private readonly token?: string;
  private readonly timeoutMs: number;
  private readonly fetch: typeof fetch;

  constructor(o: ClientOptions) {
    this.baseUrl = o.baseUrl.replace(/\/+$/, "");
    this.tenantId = o.tenantId ?? "default";
    this.retry = o.retry ?? DEFAULT_RETRY;
    this.token = o.apiToken;
    this.timeoutMs = o.timeoutMs ?? 10_000;
    this.fetch = o.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** One attempt; network failures reject. */
  async submitOnce(body: string): Promise<Answer> {
    const resp = await this.fetch(`${this.baseUrl}/v1/pcs/submit`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-tenant-id": this.tenantId },
      body,
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    const text = await resp.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = { error: { code: "not_json", message: text } };
    }
    return {
      http_status: resp.status,
      outcome: json.outcome ?? null,
      pcs_id: json.pcs_id ?? null,
      duplicate: json.duplicate === true,
      reason_code: json.reason_code ?? null,
      error_code: json.error?.code ?? null,
      error_message: json.error?.message ?? null,
      retry_after_ms: parseRetryAfter(resp.headers.get("retry-after")),
      body: json,
    };
  }

  /** Submits PCS JSON, retrying network failures and retryable answers with backoff; resolves
   * to the first decided or refused answer (or the last retryable one). */
  async submitJson(body: string): Promise<Answer> {
    for (let attempt = 1; ; attempt++) {
      let answer: Answer | null = null;
      let error: unknown = null;
      try {
        answer = await this.submitOnce(body);
        if (answerClass(answer) !== "retryable") return answer;
      } catch (e) {
        error = e;
      }
      if (attempt >= this.retry.maxAttempts) {
        if (answer) return answer;
        throw new Error(`gave up after ${attempt} attempts: ${String(error)}`);
      }
      await sleep(backoffDelay(this.retry, attempt - 1, answer?.retry_after_ms ?? null));
    }
  }

  /** Submits a signed PCS object. */
  submit(pcs: object): Promise<Answer> {
    return this.submitJson(toJson(pcs));
  }

  private async get(path: string): Promise<any | null> {
    if (!this.token) throw new Error("reads need the tenant's api token");
    const resp = await this.fetch(`${this.baseUrl}${path}`, {
      headers: { authorization: `Bearer ${this.token}`, "x-tenant-id": this.tenantId },
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    if (resp.status === 404) return null;
    if (resp.status !== 200) throw new Error(`GET ${path}: ${resp.status} ${await resp.text()}`);
    return resp.json();
  }

  /** The stored outcome (`GET /v1/pcs/{id}`), null if unknown. */
  outcome(pcsId: string): Promise<any | null> {
    return this.get(`/v1/pcs/${pcsId}`);
  }

  /** The audit proof bundle (`GET /v1/audit/proof/{id}`), null until it is in a checkpoint. */
  auditProof(pcsId: string): Promise<any | null> {
    return this.get(`/v1/audit/proof/${pcsId}`);
  }
}
