// The service node's control endpoint for the controller: boot events as JSON lines
// (GET /events, ?mac= to filter, ?follow=1 to stream), netboot profile switching
// (PUT /nodes/<mac>/profile with {"profile": "deploy"|"local"}) and GET /health.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { normalizeMac } from './backend.js';
import { bootProfileSchema } from './config.js';
import type { BootEvent } from './events.js';
import type { RoleContext, RunningRole } from './role.js';

export async function startControl(ctx: RoleContext, roles: () => string[]): Promise<RunningRole> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://service');
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(body)}\n`);
    };
    if (req.method === 'GET' && url.pathname === '/health') {
      return json(200, { name: ctx.config.name, roles: roles(), nodes: ctx.config.nodes.length });
    }
    if (req.method === 'GET' && url.pathname === '/events') {
      const mac = url.searchParams.get('mac');
      const want = mac ? normalizeMac(mac) : null;
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      for (const e of ctx.events.recent(want ?? undefined)) res.write(`${JSON.stringify(e)}\n`);
      if (url.searchParams.get('follow') !== '1') return res.end();
      const onEvent = (e: BootEvent) => {
        if (!want || e.mac === want) res.write(`${JSON.stringify(e)}\n`);
      };
      ctx.events.on('event', onEvent);
      req.on('close', () => ctx.events.off('event', onEvent));
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
        let profile: unknown;
        try {
          profile = JSON.parse(body).profile;
        } catch {
          return json(400, { message: 'expected JSON {"profile": "deploy"|"local"}' });
        }
        const parsed = bootProfileSchema.safeParse(profile);
        if (!parsed.success) return json(400, { message: 'profile must be "deploy" or "local"' });
        const mac = decodeURIComponent(m[1]);
        if (!ctx.backend.setProfile(mac, parsed.data))
          return json(404, { message: `no node with MAC ${mac}` });
        ctx.events.emitEvent({ type: 'profile.set', mac: normalizeMac(mac), detail: parsed.data });
        return json(200, { mac: normalizeMac(mac), profile: parsed.data });
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
