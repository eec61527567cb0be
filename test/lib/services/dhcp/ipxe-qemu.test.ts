// A real iPXE ROM (the one qemu loads by default for virtio-net-pci, from Debian's ipxe-qemu)
// network-boots against the DHCP role: it must take the OFFER/ACK and fetch its script from the
// HTTP URL in the file field.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BootEvent } from '../../../../src/lib/services/events.js';
import { daemonInNs, type RunningDaemon } from '../../../helpers/daemon.js';
import { type NsPair, needTools, nsPair } from '../../../helpers/netns.js';

// qemu's default ROM for the device; naming it (romfile=...) made this qemu 7.2 send nothing.
const ROM = '/usr/lib/ipxe/qemu/efi-virtio.rom';
const MAC = '52:54:00:0e:00:01';
const HTTP_PORT = 8080;
const skip =
  needTools('qemu-system-x86_64', 'curl') ||
  (existsSync(ROM) ? false : `needs ${ROM} (ipxe-qemu, recipes/install/debian-packages.sh)`);

// Answers every GET with a script that parks iPXE, and prints "GET <path> <peer>" per request.
const httpScript = `
const http = require('node:http');
http.createServer((req, res) => {
  console.log('GET ' + req.url + ' ' + req.socket.remoteAddress);
  res.end('#!ipxe\\nsleep 600\\n');
}).listen(${HTTP_PORT}, '0.0.0.0');
setTimeout(() => process.exit(0), 120000);
`;

describe('iPXE in qemu boots from the dhcp role', { skip }, () => {
  let pair: NsPair;
  let daemon: RunningDaemon;
  let dir: string;
  let web: ChildProcess | undefined;
  let vm: ChildProcess | undefined;
  let planned: string;

  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

  before(async () => {
    pair = nsPair('dhcpq');
    const prefix = pair.serverIp.split('.').slice(0, 3).join('.');
    planned = `${prefix}.40`;
    // The VM's tap and the veth share a bridge in the client namespace, which has no address.
    const c = pair.client;
    ip('-n', c, 'addr', 'flush', 'dev', pair.clientIf);
    ip('-n', c, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', c, 'tuntap', 'add', 'tap0', 'mode', 'tap');
    for (const dev of [pair.clientIf, 'tap0']) ip('-n', c, 'link', 'set', dev, 'master', 'br0');
    for (const dev of ['br0', 'tap0']) ip('-n', c, 'link', 'set', dev, 'up');
    dir = await mkdtemp(join(tmpdir(), 'kb-dhcpq-'));
    daemon = await daemonInNs(pair.server, {
      name: 'service.nancy',
      site: 'nancy',
      domain: 'nancy.grid5000.fr',
      ip: pair.serverIp,
      network: { subnet: `${prefix}.0/24`, gateway: pair.serverIp, dns: [pair.serverIp] },
      roles: ['dhcp'],
      ports: { events: 8067, http: HTTP_PORT },
      tftpRoot: dir,
      httpRoot: dir,
      boot: { deploy: { kernel: 'k', initrd: 'i' } },
      nodes: [{ mac: MAC, ip: planned, hostname: 'grappe-1', fqdn: 'grappe-1.nancy.grid5000.fr' }],
    });
    web = pair.spawn(pair.server, [process.execPath, '-e', httpScript]);
  });

  after(async () => {
    vm?.kill('SIGKILL');
    web?.kill('SIGKILL');
    await daemon?.stop();
    pair?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('takes the lease and fetches its script from the file field URL', async (t) => {
    const t0 = Date.now();
    vm = pair.spawn(pair.client, [
      'qemu-system-x86_64',
      // TCG: deterministic, and the ROM is known to fault under some nested KVM hosts.
      ...['-accel', 'tcg', '-m', '256', '-display', 'none', '-monitor', 'none', '-serial', 'none'],
      ...['-netdev', 'tap,id=n0,ifname=tap0,script=no,downscript=no'],
      ...['-device', `virtio-net-pci,netdev=n0,mac=${MAC}`, '-boot', 'n'],
    ]);
    let vmErr = '';
    vm.stderr?.on('data', (d) => {
      vmErr += d;
    });
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => {
        const ev = pair.exec(pair.server, ['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:8067/events']);
        reject(
          new Error(
            `no HTTP request from iPXE in 60 s; events: ${ev}; daemon: ${daemon.stderr()}; qemu: ${vmErr}`,
          ),
        );
      }, 60_000);
      web!.stdout!.on('data', (d) => {
        out += d;
        const first = out.split('\n').find((l) => l.startsWith('GET '));
        if (first) {
          clearTimeout(timer);
          resolve(first);
        }
      });
    });
    const fetched = Date.now() - t0;
    const [, path, peer] = line.split(' ');
    assert.equal(decodeURIComponent(path), `/boot/${MAC}.ipxe`);
    assert.equal(peer.replace(/^::ffff:/, ''), planned);

    const out = pair.exec(pair.server, [
      'curl',
      '-sS',
      '--max-time',
      '5',
      `http://127.0.0.1:8067/events?mac=${MAC}`,
    ]);
    const ev: BootEvent[] = out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    t.diagnostic(
      `after qemu started: DISCOVER ${ev[0] ? ev[0].t - t0 : '-'} ms, ACK ${ev[3] ? ev[3].t - t0 : '-'} ms, script fetched ${fetched} ms`,
    );
    assert.deepEqual(
      ev.map((e) => `${e.type} ${e.detail}`),
      ['dhcp.discover ipxe', 'dhcp.offer ipxe', 'dhcp.request ipxe', 'dhcp.ack ipxe'],
    );
    // Option 175.176 (no-pxedhcp) makes iPXE request at once instead of waiting 2 s for ProxyDHCP.
    const offer = ev.find((e) => e.type === 'dhcp.offer')!;
    const request = ev.find((e) => e.type === 'dhcp.request')!;
    assert.ok(request.t - offer.t < 1000, `REQUEST ${request.t - offer.t} ms after the OFFER`);
    assert.ok(daemon.alive());
  });
});
