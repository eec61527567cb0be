// The service node's HTTP role: per-MAC iPXE scripts (GET /boot/<mac>.ipxe) and the boot files
// under httpRoot (GET|HEAD /files/<path>), streamed with exact lengths and single byte ranges so
// iPXE and curl can fetch multi-GB images without the daemon holding them in memory.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { posix } from 'node:path';
import { pipeline } from 'node:stream';
import { normalizeMac } from '../backend.js';
import { bootScript, chainScript } from '../ipxe.js';
import type { RoleContext, StartRole } from '../role.js';
import { openInRoot, parseRange, safeSegments } from './files.js';

/** How long close() lets transfers in flight finish before cutting them. */
const CLOSE_GRACE_MS = 1000;

function clientIp(req: IncomingMessage): string {
  return (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
}

function plain(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) {
  const text = `${body}\n`;
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

/** The event a file download is: the deploy kernel and initrd are milestones of a node's boot. */
function fileEvent(ctx: RoleContext, rel: string): string {
  const { kernel, initrd } = ctx.config.boot.deploy;
  const norm = (p: string) => safeSegments(posix.normalize(p))?.join('/');
  if (rel === norm(kernel)) return 'http.kernel';
  if (rel === norm(initrd)) return 'http.initrd';
  return 'http.file';
}

function serveScript(
  ctx: RoleContext,
  port: number,
  req: IncomingMessage,
  res: ServerResponse,
  rawMac: string,
) {
  // URLs in the script name the port actually bound (the config may say 0 = any).
  const config =
    port === ctx.config.ports.http
      ? ctx.config
      : { ...ctx.config, ports: { ...ctx.config.ports, http: port } };
  if (rawMac === 'chain') return sendScript(res, req, chainScript(config));
  let macText: string;
  try {
    macText = decodeURIComponent(rawMac);
  } catch {
    return plain(res, 400, 'bad percent-encoding in the path');
  }
  const mac = normalizeMac(macText);
  const node = mac ? ctx.backend.getByMac(mac) : null;
  if (!node) return plain(res, 404, `no node with MAC ${macText}`);
  sendScript(res, req, bootScript(config, node));
  if (req.method === 'GET') {
    ctx.events.emitEvent({ type: 'http.script', mac: node.mac, ip: clientIp(req), detail: node.profile });
  }
}

function sendScript(res: ServerResponse, req: IncomingMessage, script: string) {
  res.writeHead(200, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(script),
    // The profile can switch between two requests (deploy, then local).
    'cache-control': 'no-store',
  });
  res.end(req.method === 'HEAD' ? undefined : script);
}

async function serveFile(ctx: RoleContext, req: IncomingMessage, res: ServerResponse, rawPath: string) {
  let decoded: string[];
  try {
    // Decode each segment separately so an encoded `/` (%2f) cannot join two segments into one.
    decoded = rawPath.split('/').map((s) => decodeURIComponent(s));
  } catch {
    return plain(res, 400, 'bad percent-encoding in the path');
  }
  const segments = decoded.some((s) => s.includes('/')) ? null : safeSegments(decoded.join('/'));
  const ip = clientIp(req);
  const mac = ctx.backend.getByIp(ip)?.mac ?? null;
  if (!segments) {
    ctx.events.emitEvent({ type: 'http.error', mac, ip, detail: `403 ${rawPath}` });
    return plain(res, 403, 'path leaves the served directory');
  }
  const opened = await openInRoot(ctx.config.httpRoot, segments);
  if (opened.kind !== 'file') {
    const status = opened.kind === 'denied' ? 403 : 404;
    ctx.events.emitEvent({ type: 'http.error', mac, ip, detail: `${status} ${segments.join('/')}` });
    return plain(res, status, status === 403 ? 'forbidden' : `no file ${segments.join('/')}`);
  }
  const { handle, size, mtime, rel } = opened;
  const lastModified = mtime.toUTCString();
  // If-Range with a date we did not send means the client's partial copy is stale: full body.
  const ifRange = req.headers['if-range'];
  const range =
    ifRange && ifRange !== lastModified ? { kind: 'full' as const } : parseRange(req.headers.range, size);
  const headers: Record<string, string | number> = {
    'content-type': 'application/octet-stream',
    'accept-ranges': 'bytes',
    'last-modified': lastModified,
  };
  if (range.kind === 'unsatisfiable') {
    await handle.close();
    return plain(res, 416, 'range not satisfiable', { 'content-range': `bytes */${size}` });
  }
  const [status, start, end] = range.kind === 'partial' ? [206, range.start, range.end] : [200, 0, size - 1];
  if (status === 206) headers['content-range'] = `bytes ${start}-${end}/${size}`;
  headers['content-length'] = end - start + 1;
  res.writeHead(status, headers);
  if (req.method === 'HEAD' || size === 0) {
    await handle.close();
    res.end();
    return;
  }
  ctx.events.emitEvent({
    type: fileEvent(ctx, rel),
    mac,
    ip,
    detail: status === 206 ? `${rel} bytes ${start}-${end}/${size}` : `${rel} ${size} bytes`,
  });
  // pipeline destroys the read stream (closing the handle) if the client goes away mid-transfer.
  pipeline(handle.createReadStream({ start, end }), res, (err) => {
    if (err) ctx.logger.debug(`http: ${rel} to ${ip} cut short: ${err.message}`);
  });
}

export const startHttpServer: StartRole = async (ctx) => {
  let port = ctx.config.ports.http;
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split(/[?#]/)[0];
    const script = /^\/boot\/([^/]+)\.ipxe$/.exec(path);
    const isFiles = path.startsWith('/files/');
    if (!script && !isFiles) return plain(res, 404, `no route ${path}`);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return plain(res, 405, `${req.method} not allowed`, { allow: 'GET, HEAD' });
    }
    const done = (e: unknown) => {
      ctx.logger.warn(`http: ${req.method} ${path}: ${(e as Error).message}`);
      if (!res.headersSent) plain(res, 500, 'internal error');
      else res.destroy();
    };
    try {
      if (script) return serveScript(ctx, port, req, res, script[1]);
      serveFile(ctx, req, res, path.slice('/files/'.length)).catch(done);
    } catch (e) {
      done(e);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(ctx.config.ports.http, ctx.config.bind, () => {
      server.off('error', reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;
  server.on('error', (e) => ctx.logger.warn(`http: ${e.message}`));
  return {
    name: 'http',
    port,
    close: () =>
      new Promise<void>((resolve) => {
        // Idle keep-alive sockets go now; a download in flight gets a short grace, then is cut.
        const cut = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
        server.close(() => {
          clearTimeout(cut);
          resolve();
        });
        server.closeIdleConnections();
      }),
  };
};
