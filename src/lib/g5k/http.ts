// HTTP core of the Grid'5000 client: got with its own retry disabled, and our own
// retry loop so that backoff, logging and the POST rules are explicit and testable.

import type { IncomingHttpHeaders } from 'node:http';
import { STATUS_CODES } from 'node:http';
import got from 'got';
import { TestbedError, UnreachableError } from '../errors.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { Credentials } from './credentials.js';
import { printableUrl, redact } from './credentials.js';
import type { Collection } from './types.js';

export interface RetryOptions {
  limit?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export interface HttpOptions {
  baseUrl: string;
  credentials?: Credentials | null;
  logger?: Logger;
  retry?: RetryOptions;
  timeoutMs?: number;
  sleep?: (ms: number) => Promise<void>;
  /** Source of jitter in [0, 1); injectable so delays can be asserted. */
  random?: () => number;
}

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface RequestOptions {
  json?: unknown;
  query?: Record<string, string | number>;
  /** Defaults to true for every method but POST. */
  idempotent?: boolean;
}

export interface ApiResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A 4xx/5xx answer; keeps the API's own message so callers can match on it. */
export class G5kApiError extends TestbedError {
  constructor(
    message: string,
    status: number,
    readonly apiMessage: string,
  ) {
    super(message, status);
  }
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN']);
// A POST is not idempotent (a job or deployment would be created twice), so it is only
// retried when the request certainly never reached the server: the connection was
// refused, or the name did not resolve. A reset or timeout may come after the server
// acted on it.
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'EAI_AGAIN']);

export const defaultSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class G5kHttp {
  readonly baseUrl: string;
  private readonly creds: Credentials | null;
  private readonly log: Logger;
  private readonly limit: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly timeoutMs: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;

  constructor(opts: HttpOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.creds = opts.credentials ?? null;
    this.log = opts.logger ?? silentLogger;
    this.limit = opts.retry?.limit ?? 5;
    this.baseDelayMs = opts.retry?.baseDelayMs ?? 500;
    this.maxDelayMs = opts.retry?.maxDelayMs ?? 10_000;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.sleep = opts.sleep ?? defaultSleep;
    this.random = opts.random ?? Math.random;
  }

  /** The Basic login sent, if any: who the API knows the jobs' owner as. */
  get login(): string | undefined {
    return this.creds?.username;
  }

  async request(method: Method, path: string, opts: RequestOptions = {}): Promise<ApiResponse> {
    const idempotent = opts.idempotent ?? method !== 'POST';
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.creds) {
      const token = Buffer.from(`${this.creds.username}:${this.creds.password}`).toString('base64');
      headers.authorization = `Basic ${token}`;
    }
    for (let attempt = 1; ; attempt++) {
      let res: ApiResponse | undefined;
      let code = '';
      try {
        const r = await got(this.baseUrl + path, {
          method,
          headers,
          json: opts.json,
          searchParams: opts.query,
          retry: { limit: 0 },
          https: this.tlsOptions(),
          timeout: { request: this.timeoutMs },
          throwHttpErrors: false,
          responseType: 'text',
        });
        res = { status: r.statusCode, headers: r.headers, body: r.body };
      } catch (err) {
        code = errorCode(err);
      }
      const canRetry = attempt <= this.limit;
      if (res) {
        if (res.status < 400) return res;
        if (canRetry && retryableStatus(res.status, idempotent)) {
          const delay = this.retryAfter(res.headers['retry-after']) ?? this.backoff(attempt);
          this.noteRetry(method, path, `${res.status}`, attempt, delay);
          await this.sleep(delay);
          continue;
        }
        throw this.statusError(method, path, res, attempt);
      }
      const connection = CONNECTION_CODES.has(code);
      if (canRetry && connection && (idempotent || NOT_SENT_CODES.has(code))) {
        const delay = this.backoff(attempt);
        this.noteRetry(method, path, code, attempt, delay);
        await this.sleep(delay);
        continue;
      }
      throw new UnreachableError(
        redact(`cannot reach the testbed API at ${printableUrl(this.baseUrl)}: ${code}`, this.creds),
      );
    }
  }

  /** verify_ssl of the credentials file, as got wants it. */
  private tlsOptions(): { rejectUnauthorized?: boolean; certificateAuthority?: string } | undefined {
    const tls = this.creds?.tls;
    if (!tls) return undefined;
    return 'ca' in tls ? { certificateAuthority: tls.ca } : { rejectUnauthorized: false };
  }

  /** GET a single document, checking that it is a JSON object. */
  async getJson<T>(path: string, query?: Record<string, string | number>): Promise<T> {
    const res = await this.request('GET', path, { query });
    return this.parseObject<T>('GET', path, res);
  }

  /** Parses a success body; anything but a JSON object is the API misbehaving. */
  parseObject<T>(method: Method, path: string, res: ApiResponse): T {
    let value: unknown;
    try {
      value = JSON.parse(res.body);
    } catch {
      throw new TestbedError(
        `${method} ${path}: the API answered ${res.status} with a body that is not JSON`,
      );
    }
    if (value === null || typeof value !== 'object') {
      throw new TestbedError(`${method} ${path}: the API answered ${res.status} with an unexpected document`);
    }
    return value as T;
  }

  /** Every item of a collection, following `offset`/`total` whatever page size the server uses. */
  async getAll<T>(path: string, query: Record<string, string | number> = {}, pageSize = 500): Promise<T[]> {
    const items: T[] = [];
    for (;;) {
      const page = await this.getJson<Collection<T>>(path, {
        ...query,
        offset: items.length,
        limit: pageSize,
      });
      if (!Array.isArray(page.items)) {
        throw new TestbedError(`GET ${path}: the API answered a collection without "items"`);
      }
      items.push(...page.items);
      const total = typeof page.total === 'number' ? page.total : items.length;
      if (page.items.length === 0 || items.length >= total) return items;
    }
  }

  private backoff(attempt: number): number {
    const ceiling = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (attempt - 1));
    // Half fixed, half random: spreads clients apart without ever retrying at once.
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2);
  }

  /** Retry-After in seconds or as an HTTP date, capped at maxDelayMs. */
  private retryAfter(header: string | undefined): number | undefined {
    if (!header) return undefined;
    const seconds = /^\d+$/.test(header.trim()) ? Number(header) : (Date.parse(header) - Date.now()) / 1000;
    if (!Number.isFinite(seconds)) return undefined;
    return Math.min(this.maxDelayMs, Math.max(0, Math.round(seconds * 1000)));
  }

  private noteRetry(method: Method, path: string, cause: string, attempt: number, delay: number): void {
    this.log.debug(`${method} ${path}: ${cause}, retry ${attempt}/${this.limit} in ${delay} ms`);
  }

  private statusError(method: Method, path: string, res: ApiResponse, attempts: number): G5kApiError {
    const title = STATUS_CODES[res.status] ?? 'Error';
    const apiMessage = redact(
      bodyMessage(res.body, res.headers['content-type'], res.status, title),
      this.creds,
    );
    const after = attempts > 1 ? ` (after ${attempts} attempts)` : '';
    const detail = apiMessage ? `: ${apiMessage}` : '';
    return new G5kApiError(
      `${method} ${path}: ${res.status} ${title}${detail}${after}`,
      res.status,
      apiMessage,
    );
  }
}

function retryableStatus(status: number, idempotent: boolean): boolean {
  // 503 and 429 mean the server declined to process the request, so even a POST is safe.
  if (status === 503 || status === 429) return true;
  return idempotent && status >= 500;
}

function errorCode(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown; message?: unknown };
  if (typeof e.code === 'string' && e.code !== 'ERR_GOT_REQUEST_ERROR') return e.code;
  return typeof e.name === 'string' ? e.name : 'unknown error';
}

/**
 * What an error body says, on one line: the `message` of a JSON body, else the text (the real
 * API answers errors as text/plain, the status carrying the meaning), without a repeat of the
 * status line it may start with and without the tags of an HTML page, shortened.
 */
function bodyMessage(body: string, contentType: string | undefined, status: number, title: string): string {
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    if (typeof parsed?.message === 'string') return parsed.message;
  } catch {
    // not JSON: read it as text
  }
  let text = body;
  if (/^text\/html\b/i.test(contentType ?? '')) text = text.replace(/<[^>]*>/g, ' ');
  text = text.replace(/\s+/g, ' ').trim();
  const statusLine = new RegExp(`^(?:${status}\\s*)?${title.replace(/[^\w ]/g, '.')}\\b\\s*[:.-]?\\s*`, 'i');
  text = text.replace(statusLine, '');
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
