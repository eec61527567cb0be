// The service node's control endpoint for the controller: boot events as JSON lines
// (GET /events, ?mac= to filter, ?follow=1 to stream), netboot profile switching
// (PUT /nodes/<mac>/profile with {"profile": "deploy"|"local"} or
// {"profile": "env", "env": {"kernel": "envs/<sha256>/kernel", "initrd": ..., "cmdline": ...}}),
// environment boot files (PUT /files/envs/<sha256>/kernel|initrd, served by the HTTP role under
// /files/) and GET /health. With a secret in the config (control.secret), every request but
// GET /health must carry `Authorization: Bearer <secret>` (else 401): the port is reachable by
// whoever shares the service node's networks, and a profile decides which kernel nodes boot.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, open, readdir, realpath, rename, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { normalizeMac } from './backend.js';
import { bootProfileSchema, envBootSchema, envFilePattern, type ServiceNodeConfig } from './config.js';
import type { BootEvent } from './events.js';
import type { RoleContext, RunningRole } from './role.js';

type Reply = (status: number, body: unknown, headers?: Record<string, string>) => void;

/** Where uploads are staged: the config's uploadDir, else `<httpRoot>.uploads` beside httpRoot. */
export function uploadDirOf(config: Pick<ServiceNodeConfig, 'httpRoot' | 'uploadDir'>): string {
  if (config.uploadDir) return config.uploadDir;
  const root = resolve(config.httpRoot);
  return join(dirname(root), `${basename(root)}.uploads`);
}

/**
 * PUT /files/<rel>: stores the body as httpRoot/<rel>, where rel must be envs/<sha256>/kernel or
 * initrd and the sha256 is the body's own (content-addressed: a path always holds the same bytes).
 * Written to a temporary file in the upload directory (outside every served root), synced, then
 * renamed into place: the HTTP role serves nothing or the whole file, never part of one. Refused,
 * with nothing written: any other path (`..`, absolute, encoded), a body over uploadMaxBytes, a
 * body whose sha256 is not the path's. With `if-none-match: *`, an existing file is kept (412).
 */
async function putFile(
  ctx: RoleContext,
  req: IncomingMessage,
  rawRel: string,
  reply: Reply,
  gate: UploadGate,
) {
  const refuse = (status: number, message: string, headers: Record<string, string> = {}) => {
    // an unread body would otherwise keep the connection busy: close it after the answer
    reply(status, { message }, { connection: 'close', ...headers });
  };
  if (!envFilePattern.test(rawRel)) {
    return refuse(
      403,
      `cannot store ${JSON.stringify(rawRel)}: only envs/<sha256 in lower-case hex>/kernel or initrd may be uploaded`,
    );
  }
  const max = ctx.config.uploadMaxBytes;
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > max) {
    return refuse(413, `${rawRel}: ${declared} bytes is over the ${max}-byte upload limit`);
  }
  if (gate.active >= ctx.config.uploadsAtOnce) {
    return refuse(503, `already ${gate.active} uploads under way: try again shortly`, { 'retry-after': '1' });
  }
  // Counted from here, so uploads that start together cannot each pass the quota alone.
  const reserve = declared !== undefined ? Number(declared) : max;
  gate.active++;
  gate.reserved += reserve;
  try {
    const quota = ctx.config.uploadQuotaBytes;
    const stored = await bytesUnder(join(ctx.config.httpRoot, 'envs'));
    if (stored + gate.reserved > quota) {
      return refuse(
        507,
        `${rawRel}: storing it would take the environment files past the ${quota}-byte quota (${stored} bytes stored)`,
      );
    }
    await storeFile(ctx, req, rawRel, refuse, reply, declared, max);
  } finally {
    gate.active--;
    gate.reserved -= reserve;
  }
}

/** Uploads under way on one control endpoint, and the bytes they may still write. */
interface UploadGate {
  active: number;
  reserved: number;
}

/** Bytes of the regular files under dir (a few environments: a short walk). */
async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  for (const e of entries) {
    if (!e.isFile()) continue;
    total += (await stat(join(e.parentPath, e.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

async function storeFile(
  ctx: RoleContext,
  req: IncomingMessage,
  rawRel: string,
  refuse: (status: number, message: string) => void,
  reply: Reply,
  declared: string | undefined,
  max: number,
) {
  const parts = rawRel.split('/');
  const want = parts[1];
  const name = parts.at(-1)!;
  // The body goes to the upload directory first; the file's directory is made only once it is whole.
  const under = (p: string, dir: string) => p === dir || p.startsWith(dir.endsWith(sep) ? dir : dir + sep);
  // A staged file in a served tree would be served half-written: checked on the paths as written
  // (before the directory is made) and again with symlinks resolved.
  const dir = resolve(uploadDirOf(ctx.config));
  const inServed = (p: string, roots: (string | null)[]) => roots.some((r) => r !== null && under(p, r));
  const servedRefusal = `${rawRel}: the upload directory ${dir} is inside a served root`;
  if (inServed(dir, [resolve(ctx.config.httpRoot), resolve(ctx.config.tftpRoot)]))
    return refuse(500, servedRefusal);
  let root: string;
  let staging: string;
  let tftpRoot: string | null;
  try {
    root = await realpath(ctx.config.httpRoot);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    staging = await realpath(dir);
    tftpRoot = await realpath(ctx.config.tftpRoot).catch(() => null);
  } catch (e) {
    return refuse(500, `${rawRel}: cannot prepare the upload directory (${(e as Error).message})`);
  }
  if (inServed(staging, [root, tftpRoot])) return refuse(500, servedRefusal);
  const inRoot = (p: string) => under(p, root) && p !== root;
  const target = join(root, ...parts);
  if (req.headers['if-none-match'] === '*') {
    const exists = await stat(target).then(
      (s) => s.isFile(),
      () => false,
    );
    if (exists) return refuse(412, `${rawRel} is already there`);
  }
  const tmp = join(staging, `${want}.${name}.${process.pid}.${randomBytes(4).toString('hex')}`);
  const fh = await open(tmp, 'wx', 0o644);
  const hash = createHash('sha256');
  let bytes = 0;
  let outcome: { status: number; message: string } | null = null;
  try {
    // destroyOnReturn false: leaving the loop early must not cut the socket before the answer
    for await (const chunk of req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      if (bytes > max) {
        outcome = { status: 413, message: `${rawRel}: over the ${max}-byte upload limit` };
        break;
      }
      hash.update(chunk);
      await fh.write(chunk);
    }
    if (!outcome && declared !== undefined && bytes !== Number(declared)) {
      outcome = { status: 400, message: `${rawRel}: got ${bytes} of ${declared} bytes` };
    }
    const sha256 = hash.digest('hex');
    if (!outcome && sha256 !== want) {
      outcome = { status: 400, message: `${rawRel}: the body's sha256 is ${sha256}, not the path's` };
    }
    if (!outcome) {
      await fh.sync();
      await fh.close();
      await mkdir(join(root, ...parts.slice(0, -1)), { recursive: true });
      // a symlink planted under httpRoot must not redirect the file elsewhere
      const dir = await realpath(join(root, ...parts.slice(0, -1)));
      if (!inRoot(dir)) {
        outcome = { status: 403, message: `${rawRel}: its directory leaves the served root` };
      } else {
        await rename(tmp, join(dir, name));
        ctx.events.emitEvent({ type: 'file.stored', mac: null, detail: `${rawRel} ${bytes} bytes` });
        return reply(201, { path: rawRel, bytes, sha256 });
      }
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const cut =
      code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || (e as Error).message === 'aborted';
    outcome = cut
      ? { status: 400, message: `${rawRel}: upload cut short (${(e as Error).message})` }
      : code === 'ENOSPC' || code === 'EDQUOT'
        ? { status: 507, message: `${rawRel}: no space left on the service node (${code})` }
        : { status: 500, message: `${rawRel}: cannot store it (${(e as Error).message})` };
  }
  await fh.close().catch(() => {});
  await rm(tmp, { force: true });
  // (to a client that went away, this answer goes nowhere, harmlessly)
  refuse(outcome.status, outcome.message);
}

type Credential = 'ok' | 'none' | 'wrong';

/**
 * How a request stands against the configured secret: 'ok' (the right bearer token, or no secret
 * configured), 'none' (no Authorization header) or 'wrong'. The token and the secret are compared
 * as SHA-256 digests with timingSafeEqual: equal lengths, and a time that tells nothing of either.
 */
export function credentialCheck(secret: string | undefined): (req: IncomingMessage) => Credential {
  if (!secret) return () => 'ok';
  const want = createHash('sha256').update(secret).digest();
  return (req) => {
    const header = req.headers.authorization;
    if (header === undefined) return 'none';
    const m = /^Bearer +(\S+) *$/i.exec(header);
    if (!m) return 'wrong';
    const got = createHash('sha256').update(m[1]).digest();
    return timingSafeEqual(got, want) ? 'ok' : 'wrong';
  };
}

/** Followers of /events at once: the controller needs a few; more is someone holding memory. */
export const MAX_FOLLOWERS = 64;
/** Bytes a follower may leave unread before it is cut. */
export const FOLLOWER_BACKLOG_BYTES = 1 << 20;

export async function startControl(ctx: RoleContext, roles: () => string[]): Promise<RunningRole> {
  let followers = 0;
  const uploads: UploadGate = { active: 0, reserved: 0 };
  const secret = ctx.config.control?.secret;
  if (!secret) {
    ctx.logger.warn(
      `service ${ctx.config.name}: no control secret in its config (written by an older kabootstrap): ` +
        'anyone who reaches the control port can switch what its nodes boot',
    );
  }
  const credential = credentialCheck(secret);
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://service');
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      if (res.headersSent) return;
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(`${JSON.stringify(body)}\n`);
    };
    const cred = credential(req);
    if (req.method === 'GET' && url.pathname === '/health' && cred !== 'wrong') {
      // open to liveness probes, which learn that it answers and nothing else
      if (cred === 'none') return json(200, { status: 'ok' });
      return json(200, { name: ctx.config.name, roles: roles(), nodes: ctx.config.nodes.length });
    }
    if (cred !== 'ok') {
      // an unread body (an upload) would keep the connection busy: close it after the answer
      return json(
        401,
        { message: "missing or wrong control secret (send Authorization: Bearer <the testbed's secret>)" },
        { 'www-authenticate': 'Bearer', connection: 'close' },
      );
    }
    // The raw path: URL parsing would resolve `..` and percent-escapes before we could refuse them.
    const rawPath = (req.url ?? '/').split(/[?#]/)[0];
    if (req.method === 'PUT' && rawPath.startsWith('/files/')) {
      putFile(ctx, req, rawPath.slice('/files/'.length), json, uploads).catch((e) =>
        json(500, { message: `upload failed: ${(e as Error).message}` }, { connection: 'close' }),
      );
      return;
    }
    if (req.method === 'GET' && url.pathname === '/events') {
      const mac = url.searchParams.get('mac');
      const want = mac ? normalizeMac(mac) : null;
      const follow = url.searchParams.get('follow') === '1';
      if (follow && followers >= MAX_FOLLOWERS)
        return json(503, { message: `already ${MAX_FOLLOWERS} followers of /events: try again later` });
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      for (const e of ctx.events.recent(want ?? undefined)) res.write(`${JSON.stringify(e)}\n`);
      if (!follow) return res.end();
      // a follower has its headers at once, not with the first event
      res.flushHeaders();
      followers++;
      const onEvent = (e: BootEvent) => {
        if (want && e.mac !== want) return;
        // a follower that does not read is cut, not buffered for without bound
        if (res.writableLength > FOLLOWER_BACKLOG_BYTES) return void res.destroy();
        res.write(`${JSON.stringify(e)}\n`);
      };
      ctx.events.on('event', onEvent);
      res.once('close', () => {
        followers--;
        ctx.events.off('event', onEvent);
      });
      return;
    }
    const m = /^\/nodes\/([^/]+)\/profile$/.exec(url.pathname);
    if (req.method === 'PUT' && m) {
      let body = '';
      req.on('data', (d) => {
        body += d;
        if (body.length > 4096) req.destroy();
      });
      req.on('end', () => {
        let request: { profile?: unknown; env?: unknown };
        try {
          request = JSON.parse(body);
          if (request === null || typeof request !== 'object') throw new Error('not an object');
        } catch {
          return json(400, { message: 'expected JSON {"profile": "deploy"|"local"|"env"}' });
        }
        const parsed = bootProfileSchema.safeParse(request.profile);
        if (!parsed.success) return json(400, { message: 'profile must be "deploy", "local" or "env"' });
        const profile = parsed.data;
        let env: ReturnType<typeof envBootSchema.parse> | undefined;
        if (profile === 'env') {
          const e = envBootSchema.safeParse(request.env);
          if (!e.success) {
            const issue = e.error.issues[0];
            const where = issue.path.length ? `env.${issue.path.join('.')}` : 'env';
            return json(400, { message: `${where}: ${issue.message}` });
          }
          env = e.data;
        } else if (request.env !== undefined) {
          return json(400, { message: `env: only the env profile takes one, not ${profile}` });
        }
        let mac: string;
        try {
          mac = decodeURIComponent(m[1]);
        } catch {
          return json(400, { message: 'bad percent-encoding in the MAC' });
        }
        const node = ctx.backend.getByMac(mac);
        if (!node) return json(404, { message: `no node with MAC ${mac}` });
        const finish = () => {
          ctx.backend.setProfile(mac, profile, env);
          const detail = env ? `env ${env.kernel}` : profile;
          ctx.events.emitEvent({ type: 'profile.set', mac: node.mac, detail });
          return json(200, env ? { mac: node.mac, profile, env } : { mac: node.mac, profile });
        };
        if (!env) return finish();
        // the files must be there already: a node must not be sent to a kernel that is not served
        const files = [env.kernel, env.initrd].filter((p): p is string => p !== null);
        Promise.all(
          files.map((p) =>
            stat(join(ctx.config.httpRoot, ...p.split('/'))).then(
              (s) => (s.isFile() ? null : p),
              () => p,
            ),
          ),
        ).then((absent) => {
          const gone = absent.filter((p) => p !== null);
          if (gone.length > 0)
            return json(409, { message: `${gone.join(', ')}: not uploaded (PUT /files/${gone[0]} first)` });
          finish();
        });
      });
      return;
    }
    json(404, { message: `no route ${req.method} ${url.pathname}` });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(ctx.config.ports.events, ctx.config.bind, () => resolve());
  });
  return {
    name: 'control',
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
