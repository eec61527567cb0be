// The socket wrapper on loopback, without namespaces or root: start/close, a port clash, and the
// events a request produces (replies go to port 68, which only the namespace tests listen on).
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { after, describe, it } from 'node:test';
import { silentLogger } from '../../../../src/lib/log.js';
import { staticBackend } from '../../../../src/lib/services/backend.js';
import { serviceNodeConfigSchema } from '../../../../src/lib/services/config.js';
import { startDhcpServer } from '../../../../src/lib/services/dhcp/server.js';
import { type BootEvent, EventLog } from '../../../../src/lib/services/events.js';
import type { RoleContext, RunningRole } from '../../../../src/lib/services/role.js';
import { buildPacket } from './wire.js';

const KNOWN = '52:54:00:0f:00:01';

function context({ subnet = '127.0.0.0/8' } = {}): RoleContext {
  const config = serviceNodeConfigSchema.parse({
    name: 'service.nancy',
    site: 'nancy',
    domain: 'nancy.grid5000.fr',
    ip: '127.0.0.1',
    network: { subnet, gateway: '127.0.0.1', dns: ['127.0.0.1'] },
    roles: ['dhcp'],
    ports: { dhcp: 0 },
    bind: '127.0.0.1',
    broadcast: '127.0.0.1',
    tftpRoot: '/tmp',
    httpRoot: '/tmp',
    boot: { deploy: { kernel: 'k', initrd: 'i' } },
    nodes: [{ mac: KNOWN, ip: '127.0.0.50', hostname: 'grappe-1', fqdn: 'grappe-1.nancy.grid5000.fr' }],
  });
  return { config, backend: staticBackend(config), events: new EventLog(), logger: silentLogger };
}

function waitFor(events: EventLog, n: number): Promise<BootEvent[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${JSON.stringify(events.recent())}`)), 5000);
    const check = () => {
      if (events.recent().length >= n) {
        clearTimeout(timer);
        events.off('event', check);
        resolve(events.recent());
      }
    };
    events.on('event', check);
    check();
  });
}

describe('dhcp role on loopback', () => {
  const running: RunningRole[] = [];
  after(async () => {
    for (const r of running) await r.close();
  });

  it('binds, reports its port, refuses a port already taken, and closes twice', async () => {
    const a = await startDhcpServer(context());
    running.push(a);
    assert.equal(a.name, 'dhcp');
    assert.ok(a.port > 0);
    const ctx = context();
    ctx.config.ports.dhcp = a.port;
    await assert.rejects(startDhcpServer(ctx), /EADDRINUSE/);
    const b = await startDhcpServer(context());
    await b.close();
    await b.close();
  });

  it('turns packets into events: offer for a known MAC, ignored for others, error for garbage', async () => {
    const ctx = context();
    const role = await startDhcpServer(ctx);
    running.push(role);
    const client = createSocket('udp4');
    const send = (b: Buffer) => new Promise<void>((r) => client.send(b, role.port, '127.0.0.1', () => r()));
    await send(buildPacket({ xid: 1, mac: KNOWN, options: [[53, [1]]] }));
    await send(buildPacket({ xid: 2, mac: '52:54:00:0f:00:99', options: [[53, [1]]] }));
    await send(Buffer.from('not a dhcp packet'));
    const ev = await waitFor(ctx.events, 4);
    client.close();
    assert.deepEqual(
      ev.map((e) => [e.type, e.mac, e.ip ?? null]),
      [
        ['dhcp.discover', KNOWN, null],
        ['dhcp.offer', KNOWN, '127.0.0.50'],
        ['dhcp.ignored', '52:54:00:0f:00:99', null],
        ['dhcp.error', null, null],
      ],
    );
    assert.match(ev[3].detail ?? '', /^malformed packet: too short/);
  });

  it('stays silent to a known MAC relayed from another subnet or at an address not its own', async () => {
    // The node's subnet leaves 127.0.0.1 out, so the requests below name it as a foreign relay
    // and a foreign address: were they answered, the replies would go there.
    const ctx = context({ subnet: '127.0.0.48/28' });
    const role = await startDhcpServer(ctx);
    running.push(role);
    const client = createSocket('udp4');
    const send = (b: Buffer) => new Promise<void>((r) => client.send(b, role.port, '127.0.0.1', () => r()));
    await send(buildPacket({ xid: 3, mac: KNOWN, giaddr: '127.0.0.1', options: [[53, [1]]] }));
    await send(buildPacket({ xid: 4, mac: KNOWN, ciaddr: '127.0.0.1', options: [[53, [8]]] }));
    const ev = await waitFor(ctx.events, 4);
    client.close();
    assert.deepEqual(
      ev.map((e) => [e.type, e.mac]),
      [
        ['dhcp.discover', KNOWN],
        ['dhcp.ignored', KNOWN],
        ['dhcp.inform', KNOWN],
        ['dhcp.ignored', KNOWN],
      ],
    );
    assert.match(ev[1].detail ?? '', /relayed by 127\.0\.0\.1, outside the node's subnet 127\.0\.0\.48\/28/);
    assert.match(ev[3].detail ?? '', /ciaddr 127\.0\.0\.1, planned 127\.0\.0\.50/);
  });
});
