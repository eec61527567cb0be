// The embedded Grid'5000-compatible API over node:http. No background timers: the scheduler is
// moved forward to the clock at the start of every request, so close() is immediate. A twin
// (with `machines`) is the exception: it ticks, to remove the machines of a job that ran out of
// walltime while nobody asked.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type ApiUsers, checkLogin } from './auth.js';
import type { Inventory } from './inventory.js';
import { type MachineHooks, MachineSync } from './machines.js';
import { HttpError, matchRoute, type RouteContext, type RouteResult } from './routes.js';
import { Scheduler, SchedulerError, type SchedulerOptions } from './scheduler.js';
import { loadScheduler, StateSaver } from './state-file.js';

export interface ApiServerOptions {
  inventory: Inventory;
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Who submits jobs when the request carries no HTTP Basic login. Default `kabootstrap`. */
  user?: string;
  /** When set, every request needs this HTTP Basic login. */
  credentials?: { username: string; password: string };
  /** When set, every request needs the Basic login of one of these users with its password. */
  users?: ApiUsers;
  /** Scheduler state: loaded at start when it exists, saved after every change. */
  stateFile?: string;
  launchDelaySeconds?: number;
  deployDelaySeconds?: number;
  /** Enables POST /_admin/faults, for tests that drive faults from another process. */
  admin?: boolean;
  /** UNIX time in seconds. */
  clock?: () => number;
  /**
   * The machines behind the API (a site's twin): brought up and removed with their jobs,
   * reinstalled by deployments, moved between VLANs. Without it, nodes are only records.
   */
  machines?: MachineHooks;
  /** How often a twin looks for jobs that ended on their own (walltime). Default 1000 ms. */
  machinesTickMs?: number;
  /** Where a twin reports a machine change that failed. */
  onMachineError?: (err: Error) => void;
}

export interface ApiFaults {
  /**
   * The next `count` non-admin requests whose path starts with `pathPrefix` answer `status`,
   * with a `Retry-After` of `retryAfter` seconds when given.
   */
  failRequests(count: number, status?: number, pathPrefix?: string, retryAfter?: number): void;
  /** The next `count` non-admin requests whose path starts with `pathPrefix` wait `ms` first. */
  delayRequests(count: number, ms: number, pathPrefix?: string): void;
  /**
   * The next `count` non-admin requests with this method whose path starts with `pathPrefix`
   * are carried out, then their connection is destroyed before the answer: the client cannot
   * tell whether, say, its job was created.
   */
  dropAnswers(count: number, method?: string, pathPrefix?: string): void;
  failNextJobs(count: number, message: string): void;
  /** The nodes' next `times` deployments come back KO (default 1; Infinity: for good). */
  failDeployNodes(fqdns: string[], times?: number): void;
  /** KaVLAN refuses to move these nodes (answers `unchanged`, membership stays as it was). */
  refuseVlanMoves(fqdns: string[]): void;
}

export interface ApiServer {
  /** Base URL including `/stable`, e.g. http://127.0.0.1:PORT/stable. */
  url: string;
  port: number;
  scheduler: Scheduler;
  faults: ApiFaults;
  close(): Promise<void>;
}

const MAX_BODY = 1 << 20;
const PREFIXES = ['/stable', '/3.0'];
const CONTENT_TYPES = {
  item: 'application/vnd.grid5000.item+json; charset=utf-8',
  collection: 'application/vnd.grid5000.collection+json; charset=utf-8',
  json: 'application/json; charset=utf-8',
  text: 'text/plain; charset=utf-8',
};

function splitPrefix(pathname: string): { prefix: string; rest: string } {
  for (const p of PREFIXES) {
    if (pathname === p || pathname.startsWith(`${p}/`)) return { prefix: p, rest: pathname.slice(p.length) };
  }
  return { prefix: '', rest: pathname };
}

function segmentsOf(path: string): string[] {
  try {
    return path
      .split('/')
      .filter((s) => s !== '')
      .map(decodeURIComponent);
  } catch {
    throw new HttpError(400, `malformed path ${path}`);
  }
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpError(413, `request body is larger than ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `request body is not valid JSON (${(err as Error).message})`);
  }
}

/** Errors are plain text, as on the real API: the status carries the meaning, the body says why. */
function errorResult(status: number, message: string, headers?: Record<string, string>): RouteResult {
  return { status, kind: 'text', body: `${message}\n`, headers };
}

/** 401 as Grid'5000's front answers it: a plain-text line and the Basic challenge. */
const UNAUTHORIZED: RouteResult = errorResult(401, 'authentication required', {
  'www-authenticate': 'Basic realm="Grid5000"',
});

function send(res: ServerResponse, result: RouteResult): void {
  const headers: Record<string, string> = { ...result.headers };
  if (result.status === 204 || result.body === undefined) {
    res.writeHead(result.status, headers);
    res.end();
    return;
  }
  const text = result.kind === 'text' ? String(result.body) : JSON.stringify(result.body);
  headers['content-type'] = CONTENT_TYPES[result.kind ?? 'json'];
  headers['content-length'] = String(Buffer.byteLength(text));
  res.writeHead(result.status, headers);
  res.end(text);
}

export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const host = opts.host ?? '127.0.0.1';
  const clock = opts.clock ?? (() => Date.now() / 1000);
  const schedulerOptions: SchedulerOptions = {
    launchDelay: opts.launchDelaySeconds,
    deployDelay: opts.deployDelaySeconds,
  };
  const scheduler = opts.stateFile
    ? await loadScheduler(opts.stateFile, opts.inventory, schedulerOptions)
    : new Scheduler(opts.inventory, schedulerOptions);
  const saver = opts.stateFile ? new StateSaver(opts.stateFile, scheduler) : null;
  const failing = { count: 0, status: 503, pathPrefix: '', retryAfter: undefined as number | undefined };
  const delaying = { count: 0, ms: 0, pathPrefix: '' };
  const dropping = { count: 0, method: 'POST', pathPrefix: '' };
  const users: ApiUsers | undefined =
    opts.users ??
    (opts.credentials ? new Map([[opts.credentials.username, opts.credentials.password]]) : undefined);
  const machines = opts.machines
    ? new MachineSync(scheduler, opts.machines, clock, opts.onMachineError)
    : undefined;

  const faults: ApiFaults = {
    failRequests(count, status = 503, pathPrefix = '', retryAfter = undefined) {
      Object.assign(failing, { count, status, pathPrefix, retryAfter });
    },
    delayRequests(count, ms, pathPrefix = '') {
      Object.assign(delaying, { count, ms, pathPrefix });
    },
    dropAnswers(count, method = 'POST', pathPrefix = '') {
      Object.assign(dropping, { count, method: method.toUpperCase(), pathPrefix });
    },
    failNextJobs: (count, message) => scheduler.failNextJobs(count, message),
    failDeployNodes: (fqdns, times) => scheduler.failDeployNodes(fqdns, times),
    refuseVlanMoves: (fqdns) => scheduler.refuseVlanMoves(fqdns),
  };

  async function route(req: IncomingMessage): Promise<RouteResult> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const { prefix, rest } = splitPrefix(url.pathname);
    const segments = segmentsOf(rest);
    const admin = segments[0] === '_admin';
    if (!admin && delaying.count > 0 && url.pathname.startsWith(delaying.pathPrefix)) {
      delaying.count--;
      await new Promise((resolve) => setTimeout(resolve, delaying.ms));
    }
    if (!admin && failing.count > 0 && url.pathname.startsWith(failing.pathPrefix)) {
      failing.count--;
      const retry =
        failing.retryAfter === undefined ? undefined : { 'retry-after': String(failing.retryAfter) };
      return errorResult(failing.status, `injected failure (${failing.count} more to come)`, retry);
    }
    const check = checkLogin(req, users);
    if (!check.ok) return UNAUTHORIZED;
    const login = check.login;
    const now = clock();
    scheduler.advance(now);
    // a job seen running has its machines up before anyone is told it runs
    await machines?.reconcile().catch((err) => opts.onMachineError?.(err as Error));
    if (admin && opts.admin) return adminRoute(req, segments, faults);
    const match = matchRoute(req.method ?? 'GET', segments);
    if (match.kind === 'none') return errorResult(404, `no such resource: ${req.method} ${url.pathname}`);
    if (match.kind === 'method') {
      return errorResult(405, `${req.method} is not allowed on ${url.pathname}`, {
        allow: match.allow.join(', '),
      });
    }
    const ctx: RouteContext = {
      params: match.params,
      query: url.searchParams,
      prefix,
      origin: `http://${req.headers.host ?? `${host}:${port}`}`,
      user: login ?? opts.user ?? 'kabootstrap',
      now,
      inventory: opts.inventory,
      scheduler,
      machines,
      body: () => readBody(req),
    };
    return match.handler(ctx);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let result: RouteResult;
    try {
      result = await route(req);
    } catch (err) {
      if (err instanceof HttpError || err instanceof SchedulerError)
        result = errorResult(err.status, err.message);
      else result = errorResult(500, `internal error: ${(err as Error)?.message ?? String(err)}`);
    }
    // Saved before answering: once a client has its answer, the change survives a restart.
    if (saver) {
      try {
        await saver.save();
      } catch (err) {
        result = errorResult(
          500,
          `cannot save the API state to ${opts.stateFile}: ${(err as Error).message}`,
        );
      }
    }
    if (res.destroyed) return;
    const url = req.url ?? '/';
    if (
      dropping.count > 0 &&
      req.method === dropping.method &&
      !splitPrefix(url).rest.startsWith('/_admin') &&
      url.startsWith(dropping.pathPrefix)
    ) {
      // The request was carried out; the client never learns how it went.
      dropping.count--;
      req.socket.destroy();
      return;
    }
    send(res, result);
  }

  const server = createServer((req, res) => {
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    void handle(req, res).catch(() => {
      if (!res.headersSent && !res.destroyed) send(res, errorResult(500, 'internal error'));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  // No request may come when a job reaches its walltime: a twin looks by itself.
  const tick = machines
    ? setInterval(() => {
        scheduler.advance(clock());
        machines.reconcile().catch((err) => opts.onMachineError?.(err as Error));
      }, opts.machinesTickMs ?? 1000)
    : undefined;
  const hostInUrl = host.includes(':') ? `[${host}]` : host;

  return {
    url: `http://${hostInUrl}:${port}/stable`,
    port,
    scheduler,
    faults,
    close: async () => {
      clearInterval(tick);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await machines?.settled();
      await saver?.settled();
    },
  };
}

/**
 * POST /_admin/faults: `{failRequests: {count, status, pathPrefix, retryAfter}}`,
 * `{delayRequests: {count, ms, pathPrefix}}`, `{dropAnswers: {count, method, pathPrefix}}`,
 * `{failNextJobs: {count, message}}`, `{failDeployNodes: [...]}` (KO once) or
 * `{failDeployNodes: {nodes: [...], times: N | "always"}}`, `{refuseVlanMoves: [...]}`.
 */
const ADMIN_FAULTS = [
  'failRequests',
  'delayRequests',
  'dropAnswers',
  'failNextJobs',
  'failDeployNodes',
  'refuseVlanMoves',
];

function pathPrefix(f: Record<string, unknown>, where: string): string | undefined {
  if (f.pathPrefix !== undefined && typeof f.pathPrefix !== 'string') {
    throw new HttpError(400, `${where}.pathPrefix must be a string`);
  }
  return f.pathPrefix as string | undefined;
}

async function adminRoute(req: IncomingMessage, segments: string[], faults: ApiFaults): Promise<RouteResult> {
  if (segments.length !== 2 || segments[1] !== 'faults') return errorResult(404, `no such admin resource`);
  if (req.method !== 'POST') return errorResult(405, `${req.method} is not allowed here`, { allow: 'POST' });
  const body = await readBody(req);
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new HttpError(400, `expected a JSON object with ${ADMIN_FAULTS.join(', ')}`);
  }
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).filter((k) => !ADMIN_FAULTS.includes(k));
  if (unknown.length) throw new HttpError(400, `unknown fault ${unknown.join(', ')}`);
  const count = (v: unknown, where: string): number => {
    if (!Number.isInteger(v) || (v as number) < 0)
      throw new HttpError(400, `${where}.count must be a whole number`);
    return v as number;
  };
  // Validate everything before applying anything.
  const actions: (() => void)[] = [];
  if (b.failRequests !== undefined) {
    const f = (b.failRequests ?? {}) as Record<string, unknown>;
    const status = f.status ?? 503;
    if (!Number.isInteger(status) || (status as number) < 400 || (status as number) > 599) {
      throw new HttpError(400, 'failRequests.status must be an HTTP error status (400-599)');
    }
    const prefix = pathPrefix(f, 'failRequests');
    if (f.retryAfter !== undefined && !(Number.isInteger(f.retryAfter) && (f.retryAfter as number) >= 0)) {
      throw new HttpError(400, 'failRequests.retryAfter must be a whole number of seconds');
    }
    const n = count(f.count, 'failRequests');
    actions.push(() => faults.failRequests(n, status as number, prefix, f.retryAfter as number | undefined));
  }
  if (b.delayRequests !== undefined) {
    const f = (b.delayRequests ?? {}) as Record<string, unknown>;
    if (!Number.isInteger(f.ms) || (f.ms as number) < 0 || (f.ms as number) > 600_000) {
      throw new HttpError(400, 'delayRequests.ms must be a whole number of milliseconds up to 600000');
    }
    const prefix = pathPrefix(f, 'delayRequests');
    const n = count(f.count, 'delayRequests');
    actions.push(() => faults.delayRequests(n, f.ms as number, prefix));
  }
  if (b.dropAnswers !== undefined) {
    const f = (b.dropAnswers ?? {}) as Record<string, unknown>;
    if (
      f.method !== undefined &&
      !['GET', 'POST', 'PUT', 'DELETE'].includes(String(f.method).toUpperCase())
    ) {
      throw new HttpError(400, 'dropAnswers.method must be GET, POST, PUT or DELETE');
    }
    const prefix = pathPrefix(f, 'dropAnswers');
    const n = count(f.count, 'dropAnswers');
    actions.push(() => faults.dropAnswers(n, f.method as string | undefined, prefix));
  }
  if (b.failNextJobs !== undefined) {
    const f = (b.failNextJobs ?? {}) as Record<string, unknown>;
    const n = count(f.count, 'failNextJobs');
    const message = typeof f.message === 'string' && f.message ? f.message : 'injected job failure';
    actions.push(() => faults.failNextJobs(n, message));
  }
  const fqdns = (v: unknown, where: string): string[] => {
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) {
      throw new HttpError(400, `${where} must be an array of node FQDNs`);
    }
    return v as string[];
  };
  if (b.failDeployNodes !== undefined) {
    const f = b.failDeployNodes;
    if (Array.isArray(f)) {
      const list = fqdns(f, 'failDeployNodes');
      actions.push(() => faults.failDeployNodes(list));
    } else {
      const o = (f ?? {}) as Record<string, unknown>;
      const list = fqdns(o.nodes, 'failDeployNodes.nodes');
      const times = o.times ?? 1;
      if (times !== 'always' && (!Number.isInteger(times) || (times as number) < 1)) {
        throw new HttpError(400, 'failDeployNodes.times must be a whole number of deployments or "always"');
      }
      const n = times === 'always' ? Number.POSITIVE_INFINITY : (times as number);
      actions.push(() => faults.failDeployNodes(list, n));
    }
  }
  if (b.refuseVlanMoves !== undefined) {
    const list = fqdns(b.refuseVlanMoves, 'refuseVlanMoves');
    actions.push(() => faults.refuseVlanMoves(list));
  }
  for (const act of actions) act();
  return { status: 204 };
}
