// A typed client for a service node's control endpoint (services/control.ts): GET /health,
// GET /events (?mac=, ?follow=1 streamed as JSON lines), PUT /nodes/<mac>/profile and
// PUT /files/envs/<sha256>/kernel|initrd. Every request has a timeout (but a followed stream,
// which lasts until its signal aborts) and every failure is one ServiceError line naming what was
// asked, of which URL, and why: the service node's own message, or the HTTP status, or the cause.
// With the testbed's control secret, every request carries it as a bearer token.
import { setTimeout as sleep } from 'node:timers/promises';
import { ExitCode, KbError } from '../errors.js';
import type { BootProfile, EnvBoot } from './config.js';
import type { BootEvent } from './events.js';

export class ServiceError extends KbError {
  constructor(
    message: string,
    /** The HTTP status the service node answered; undefined when it did not answer. */
    readonly status?: number,
    /** A 503's Retry-After, in ms. */
    readonly retryAfterMs?: number,
  ) {
    super(message, status === undefined ? ExitCode.unreachable : ExitCode.testbed);
  }
}

export interface ServiceHealth {
  name: string;
  roles: string[];
  /** Nodes it serves. */
  nodes: number;
}

export interface ProfileSet {
  mac: string;
  profile: BootProfile;
  env?: EnvBoot;
}

export interface RequestOptions {
  /** Aborts the request (with the timeout, whichever comes first). */
  signal?: AbortSignal;
  /** Overrides the client's timeout for this request. */
  timeoutMs?: number;
}

/** Default timeouts: small answers, and uploads of a kernel or initrd. */
export const serviceTimeouts = { requestMs: 10_000, uploadMs: 120_000 };

export class ServiceClient {
  /** The control endpoint's base URL, without a trailing slash. */
  readonly url: string;
  private readonly timeoutMs: number;
  private readonly secret: string | null;

  /** `secret`: the testbed's control secret; null for a testbed set up before there was one. */
  constructor(url: string, opts: { timeoutMs?: number; secret?: string | null } = {}) {
    this.url = url.replace(/\/+$/, '');
    this.timeoutMs = opts.timeoutMs ?? serviceTimeouts.requestMs;
    this.secret = opts.secret ?? null;
  }

  async health(opts: RequestOptions = {}): Promise<ServiceHealth> {
    const what = `health of ${this.url}`;
    const r = await this.request(what, '/health', { method: 'GET' }, opts);
    const health = (await this.json(what, r)) as Partial<ServiceHealth>;
    // without the secret a service node that has one answers a bare liveness probe
    if (!Array.isArray(health?.roles)) {
      throw new ServiceError(
        `${what}: no roles in its answer (one with a control secret tells them only to a client that sends it)`,
      );
    }
    return health as ServiceHealth;
  }

  /** The events the service node still holds, oldest first; only one MAC's with `mac`. */
  async events(opts: RequestOptions & { mac?: string } = {}): Promise<BootEvent[]> {
    const what = `events of ${this.url}`;
    const r = await this.request(what, eventsPath(opts.mac, false), { method: 'GET' }, opts);
    const text = await this.read(what, r.text());
    return parseLines(what, text);
  }

  /**
   * Calls onEvent for each event held and each new one until `signal` aborts (then resolves) or
   * the service node ends the stream (resolves too). No timeout: the stream is meant to last.
   */
  async followEvents(
    onEvent: (e: BootEvent) => void,
    opts: { signal: AbortSignal; mac?: string },
  ): Promise<void> {
    const what = `events of ${this.url}`;
    try {
      const r = await this.request(
        what,
        eventsPath(opts.mac, true),
        { method: 'GET' },
        {
          signal: opts.signal,
          timeoutMs: 0,
        },
      );
      if (!r.body) return;
      const decoder = new TextDecoder();
      let buf = '';
      for await (const chunk of r.body as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        let nl = buf.indexOf('\n');
        while (nl >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          nl = buf.indexOf('\n');
          for (const e of parseLines(what, line)) onEvent(e);
        }
      }
    } catch (e) {
      if (opts.signal.aborted) return;
      if (e instanceof ServiceError) throw e;
      throw new ServiceError(`${what}: ${causeOf(e)}`);
    }
  }

  /** Switches the node's netboot profile; `env` names the kernel and initrd already uploaded. */
  async setProfile(
    mac: string,
    profile: BootProfile,
    env?: EnvBoot,
    opts: RequestOptions = {},
  ): Promise<ProfileSet> {
    const what = `set the profile of ${mac} to ${profile} at ${this.url}`;
    const body = JSON.stringify(env ? { profile, env } : { profile });
    const r = await this.request(
      what,
      `/nodes/${encodeURIComponent(mac)}/profile`,
      { method: 'PUT', body, headers: { 'content-type': 'application/json' } },
      opts,
    );
    return (await this.json(what, r)) as ProfileSet;
  }

  /**
   * Uploads a boot file to httpRoot/<rel> (rel: envs/<sha256 of body>/kernel|initrd). The path
   * names its content, so a file already there is kept: 'present' rather than 'stored'.
   */
  async putFile(
    rel: string,
    body: Uint8Array<ArrayBuffer>,
    opts: RequestOptions = {},
  ): Promise<'stored' | 'present'> {
    const what = `upload ${rel} to ${this.url}`;
    const timeoutMs = opts.timeoutMs ?? serviceTimeouts.uploadMs;
    const deadline = Date.now() + timeoutMs;
    let r: Response;
    // A service node receiving its limit of uploads at once answers 503: wait and try again.
    for (;;) {
      try {
        r = await this.request(
          what,
          `/files/${rel}`,
          {
            method: 'PUT',
            body,
            headers: { 'if-none-match': '*', 'content-type': 'application/octet-stream' },
          },
          { ...opts, timeoutMs: Math.max(1, deadline - Date.now()) },
          [412],
        );
        break;
      } catch (e) {
        const wait = e instanceof ServiceError && e.status === 503 ? (e.retryAfterMs ?? 1000) : null;
        if (wait === null || Date.now() + wait >= deadline || opts.signal?.aborted) throw e;
        await sleep(wait);
      }
    }
    await r.body?.cancel();
    return r.status === 412 ? 'present' : 'stored';
  }

  /** One request; an answer outside 2xx (and `accept`) becomes a ServiceError with its message. */
  private async request(
    what: string,
    path: string,
    init: RequestInit,
    opts: RequestOptions,
    accept: number[] = [],
  ): Promise<Response> {
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const timeout = timeoutMs > 0 ? AbortSignal.timeout(timeoutMs) : undefined;
    const signals = [opts.signal, timeout].filter((s): s is AbortSignal => s !== undefined);
    let r: Response;
    try {
      const headers = new Headers(init.headers);
      if (this.secret !== null) headers.set('authorization', `Bearer ${this.secret}`);
      r = await fetch(`${this.url}${path}`, {
        ...init,
        headers,
        signal: signals.length ? AbortSignal.any(signals) : undefined,
      });
    } catch (e) {
      throw new ServiceError(
        `${what}: ${timeout?.aborted ? `no answer within ${timeoutMs / 1000} s` : causeOf(e)}`,
      );
    }
    if (r.ok || accept.includes(r.status)) return r;
    let message = `HTTP ${r.status}`;
    try {
      message = ((await r.json()) as { message?: string }).message ?? message;
    } catch {}
    const retryAfter = Number(r.headers.get('retry-after'));
    throw new ServiceError(
      `${what}: ${message}`,
      r.status,
      Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter, 30) * 1000 : undefined,
    );
  }

  private async json(what: string, r: Response): Promise<unknown> {
    return this.read(what, r.json());
  }

  /** A body cut short, timed out or not what was expected, as a ServiceError. */
  private async read<T>(what: string, body: Promise<T>): Promise<T> {
    try {
      return await body;
    } catch (e) {
      throw new ServiceError(`${what}: ${causeOf(e)}`);
    }
  }
}

function eventsPath(mac: string | undefined, follow: boolean): string {
  const q = new URLSearchParams();
  if (mac) q.set('mac', mac);
  if (follow) q.set('follow', '1');
  const s = q.toString();
  return s ? `/events?${s}` : '/events';
}

function parseLines(what: string, text: string): BootEvent[] {
  const out: BootEvent[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as BootEvent);
    } catch {
      throw new ServiceError(`${what}: not a JSON event: ${line.slice(0, 80)}`);
    }
  }
  return out;
}

/** Why a request got no answer, in a few words: fetch's own message ("fetch failed") says nothing. */
function causeOf(e: unknown): string {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  if (err?.name === 'TimeoutError') return 'timed out';
  if (err?.name === 'AbortError') return 'aborted';
  const cause = err?.cause;
  if (cause?.message) return cause.message;
  if (cause?.code) return cause.code;
  return err?.message ?? String(e);
}
