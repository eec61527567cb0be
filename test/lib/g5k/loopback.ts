// A small real HTTP server on 127.0.0.1 for the client tests, plus a fake clock.

import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach } from 'node:test';

export interface Seen {
  method: string;
  /** Path and query, as received. */
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export type Handler = (req: Seen, res: ServerResponse, index: number) => void;

export interface Loopback {
  baseUrl: string;
  seen: Seen[];
  /** Replaces the handler; the request log is kept. */
  handle(handler: Handler): void;
  close(): Promise<void>;
}

export async function startLoopback(initial: Handler = (_r, res) => send(res, 404, {})): Promise<Loopback> {
  let handler = initial;
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s: Seen = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      seen.push(s);
      handler(s, res, seen.length - 1);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/stable`,
    seen,
    handle(h) {
      handler = h;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(status === 204 ? undefined : text);
}

/** A port that was bound then released: connecting to it is refused. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** `sleep` that returns at once and advances `now` instead; records every delay. */
export function fakeTime(start = 1_000_000) {
  let t = start;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => t,
    sleep: async (ms: number) => {
      sleeps.push(ms);
      t += ms;
    },
  };
}

export type FakeTime = ReturnType<typeof fakeTime>;

/**
 * In the calling suite: one loopback API for all its tests; before each, its request log emptied
 * and `set` given the API and a fresh fake clock.
 */
export function withLoopbackApi(set: (api: Loopback, time: FakeTime) => void): void {
  let api: Loopback;
  before(async () => {
    api = await startLoopback();
  });
  after(() => api.close());
  beforeEach(() => {
    api.seen.length = 0;
    set(api, fakeTime());
  });
}

export function recordingLogger() {
  const lines: string[] = [];
  return {
    lines,
    logger: {
      info: (m: string) => lines.push(`info: ${m}`),
      warn: (m: string) => lines.push(`warn: ${m}`),
      debug: (m: string) => lines.push(`debug: ${m}`),
    },
  };
}
