// The service node's control endpoint on loopback: health, the per-MAC event stream (JSON lines,
// also followed live), and netboot profile switching seen by the HTTP role's scripts.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startControl } from '../../../src/lib/services/control.js';
import { startHttpServer } from '../../../src/lib/services/http/server.js';
import type { RoleContext, RunningRole } from '../../../src/lib/services/role.js';
import { loopbackService, roleContext } from '../../helpers/service-config.js';

const MAC = '00:16:3e:0a:00:02';

describe('service control endpoint', () => {
  let ctx: RoleContext;
  let control: RunningRole;
  let http: RunningRole;
  const url = (p: string) => `http://127.0.0.1:${control.port}${p}`;

  before(async () => {
    ctx = roleContext(
      loopbackService({
        name: 'svc.s.kb.test',
        roles: ['http'],
        nodes: [{ mac: MAC, ip: '10.0.0.2', hostname: 'vm-s-1', fqdn: 'vm-s-1.s.kb.test' }],
      }),
    );
    http = await startHttpServer(ctx);
    control = await startControl(ctx, () => ['http', 'control']);
  });
  after(async () => {
    await control.close();
    await http.close();
  });

  it('reports health', async () => {
    const r = await fetch(url('/health'));
    assert.deepEqual(await r.json(), { name: 'svc.s.kb.test', roles: ['http', 'control'], nodes: 1 });
  });

  it('switches a node between the deployment environment and its local disk', async () => {
    const script = async () => await (await fetch(`http://127.0.0.1:${http.port}/boot/${MAC}.ipxe`)).text();
    assert.match(await script(), /kernel http:/);
    const put = await fetch(url(`/nodes/${encodeURIComponent(MAC)}/profile`), {
      method: 'PUT',
      body: JSON.stringify({ profile: 'local' }),
    });
    assert.deepEqual(await put.json(), { mac: MAC, profile: 'local' });
    assert.match(await script(), /sanboot/);
    const bad = await fetch(url(`/nodes/${MAC}/profile`), { method: 'PUT', body: '{"profile":"disk"}' });
    assert.equal(bad.status, 400);
    const unknown = await fetch(url('/nodes/00:16:3e:0a:00:99/profile'), {
      method: 'PUT',
      body: '{"profile":"deploy"}',
    });
    assert.equal(unknown.status, 404);
  });

  it('streams events as JSON lines, filtered by MAC, and follows new ones', async () => {
    const lines = (await (await fetch(url(`/events?mac=${MAC}`))).text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      lines.map((e) => e.type),
      ['http.script', 'profile.set', 'http.script'],
    );
    const ac = new AbortController();
    const follow = await fetch(url('/events?follow=1'), { signal: ac.signal });
    const reader = follow.body!.getReader();
    ctx.events.emitEvent({ type: 'dhcp.ack', mac: MAC, ip: '10.0.0.2' });
    let text = '';
    const deadline = Date.now() + 5000;
    while (!text.includes('dhcp.ack') && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    ac.abort();
    assert.ok(text.includes('"type":"dhcp.ack"'), text);
  });
});
