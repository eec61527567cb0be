// The DHCP role against real clients, in network namespaces: the whole daemon (dhcp role only)
// runs in the server namespace; busybox udhcpc and a raw UDP client run in the client one.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BootEvent } from '../../../../src/lib/services/events.js';
import { daemonInNs, type RunningDaemon } from '../../../helpers/daemon.js';
import { type NsPair, needTools, nsPair } from '../../../helpers/netns.js';
import { buildPacket, type OptionValue, parsePacket } from './wire.js';

const skip = needTools('busybox', 'curl');
const rawClientPath = join(import.meta.dirname, 'raw-client.mjs');

const UDHCPC_MAC = '52:54:00:0d:00:01';
const PXE_MAC = '52:54:00:0d:00:02';
const UNKNOWN_MAC = '52:54:00:0d:ff:ff';
const BURST = 200;
const burstMac = (i: number) => `52:54:00:0d:01:${i.toString(16).padStart(2, '0')}`;
const uuid = [0, ...Array.from({ length: 16 }, (_, i) => 0xa0 + i)];
const macBytes = (mac: string) => [...Buffer.from(mac.replace(/:/g, ''), 'hex')];

/** A DISCOVER shaped like a PXE ROM's (Intel/EDK2 style option list). */
function pxeOptions(type: number, arch: number): [number, OptionValue][] {
  const paramList = [
    1, 2, 3, 4, 5, 6, 11, 12, 13, 15, 16, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58, 59, 60,
  ];
  paramList.push(66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135);
  return [
    [53, [type]],
    [57, [4, 236]],
    [55, paramList],
    [97, uuid],
    [93, [0, arch]],
    [94, [1, 2, 1]],
    [60, `PXEClient:Arch:${String(arch).padStart(5, '0')}:UNDI:002001`],
  ];
}

describe('dhcp server in network namespaces', { skip }, () => {
  let pair: NsPair;
  let daemon: RunningDaemon;
  let dir: string;
  let script: string;
  const planned = new Map<string, string>();
  const started = Date.now();

  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

  before(async () => {
    pair = nsPair('dhcp');
    const prefix = pair.serverIp.split('.').slice(0, 3).join('.');
    planned.set(UDHCPC_MAC, `${prefix}.10`);
    planned.set(PXE_MAC, `${prefix}.11`);
    for (let i = 0; i < BURST; i++) planned.set(burstMac(i), `${prefix}.${20 + i}`);
    // The raw client broadcasts to 255.255.255.255 like a real one, which needs a route; the
    // namespace has no other interface, so nothing leaves it.
    ip('-n', pair.client, 'route', 'add', 'default', 'dev', pair.clientIf);
    dir = await mkdtemp(join(tmpdir(), 'kb-dhcp-'));
    script = join(dir, 'udhcpc.sh');
    await writeFile(
      script,
      '#!/bin/sh\necho "event=$1"\nenv | grep -E "^(ip|subnet|router|dns|domain|hostname|boot_file|siaddr|serverid|lease|broadcast)="\n',
    );
    await chmod(script, 0o755);
    daemon = await daemonInNs(pair.server, {
      name: 'service.nancy',
      site: 'nancy',
      domain: 'nancy.grid5000.fr',
      ip: pair.serverIp,
      network: { subnet: `${prefix}.0/24`, gateway: pair.serverIp, dns: [pair.serverIp] },
      roles: ['dhcp'],
      ports: { events: 8067 },
      tftpRoot: dir,
      httpRoot: dir,
      boot: { deploy: { kernel: 'k', initrd: 'i' } },
      nodes: [...planned].map(([mac, addr], i) => ({
        mac,
        ip: addr,
        hostname: `grappe-${i + 1}`,
        fqdn: `grappe-${i + 1}.nancy.grid5000.fr`,
      })),
    });
  });

  after(async () => {
    await daemon?.stop();
    pair?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  interface RawResult {
    replies: Map<number, Buffer>;
    answeredFirstRound: number;
    rounds: number;
    strays: number;
  }

  function rawClient(
    packets: Buffer[],
    opts: { rounds?: number; intervalMs?: number; waitMs?: number } = {},
  ): RawResult {
    const job = { packets: packets.map((b) => b.toString('hex')), to: '255.255.255.255', ...opts };
    const out = pair.exec(pair.client, [process.execPath, rawClientPath], {
      input: JSON.stringify(job),
      timeoutMs: 30_000,
    });
    const r = JSON.parse(out);
    return {
      ...r,
      replies: new Map(
        Object.entries(r.replies as Record<string, string>).map(([x, h]) => [
          Number(x),
          Buffer.from(h, 'hex'),
        ]),
      ),
    };
  }

  function events(mac?: string): BootEvent[] {
    const url = `http://127.0.0.1:8067/events${mac ? `?mac=${mac}` : ''}`;
    const out = pair.exec(pair.server, ['curl', '-sS', '--max-time', '5', url]);
    return out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
  }

  /** Runs udhcpc with the client veth set to `mac` and no address, as a booting node has. */
  function udhcpc(mac: string): Record<string, string> {
    ip('-n', pair.client, 'addr', 'flush', 'dev', pair.clientIf);
    ip('-n', pair.client, 'link', 'set', 'dev', pair.clientIf, 'address', mac);
    try {
      const out = pair.exec(
        pair.client,
        ['busybox', 'udhcpc', '-i', pair.clientIf, '-n', '-q', '-t', '3', '-T', '1', '-s', script],
        { timeoutMs: 20_000 },
      );
      const bound = out.split('event=bound\n')[1] ?? '';
      return Object.fromEntries(
        bound
          .split('\n')
          .filter((l) => l.includes('='))
          .map((l) => l.split(/=(.*)/s, 2)),
      );
    } finally {
      ip('-n', pair.client, 'addr', 'add', `${pair.clientIp}/24`, 'dev', pair.clientIf);
      ip('-n', pair.client, 'route', 'replace', 'default', 'dev', pair.clientIf);
    }
  }

  const discover = (mac: string, xid: number, options?: [number, OptionValue][]) =>
    buildPacket({
      xid,
      mac,
      options: options ?? [
        [53, [1]],
        [55, [1, 3, 6, 12, 15, 28]],
        [61, [1, ...macBytes(mac)]],
      ],
    });

  it('gives udhcpc on a known MAC its planned address, router, DNS, domain and hostname', () => {
    const env = udhcpc(UDHCPC_MAC);
    assert.equal(env.ip, planned.get(UDHCPC_MAC), JSON.stringify(env));
    assert.equal(env.subnet, '255.255.255.0');
    assert.equal(env.router, pair.serverIp);
    assert.equal(env.dns, pair.serverIp);
    assert.equal(env.domain, 'nancy.grid5000.fr');
    assert.equal(env.hostname, 'grappe-1');
    assert.equal(env.serverid, pair.serverIp);
    assert.equal(env.lease, '3600');
    assert.equal(env.boot_file, undefined, 'a plain client gets no boot file');
    assert.equal(env.siaddr, undefined, 'nor a next-server');
    const trail = events(UDHCPC_MAC).map((e) => [e.type, e.ip, e.detail].filter(Boolean).join(' '));
    assert.deepEqual(trail.slice(0, 4), [
      'dhcp.discover plain',
      `dhcp.offer ${planned.get(UDHCPC_MAC)} plain`,
      `dhcp.request ${planned.get(UDHCPC_MAC)} plain`,
      `dhcp.ack ${planned.get(UDHCPC_MAC)} plain`,
    ]);
  });

  it('does not answer udhcpc on an unknown MAC', () => {
    const t0 = Date.now();
    assert.throws(
      () => udhcpc(UNKNOWN_MAC),
      (e: { status?: number }) => e.status === 1,
    );
    assert.ok(Date.now() - t0 < 15_000);
    const ev = events(UNKNOWN_MAC);
    assert.ok(ev.length > 0 && ev.every((e) => e.type === 'dhcp.ignored'), JSON.stringify(ev));
  });

  it(`offers every one of ${BURST} known MACs discovering at once its planned address`, (t) => {
    const packets = Array.from({ length: BURST }, (_, i) => discover(burstMac(i), 0x20000000 + i));
    const t0 = Date.now();
    const r = rawClient(packets, { rounds: 4, intervalMs: 1500 });
    t.diagnostic(
      `${r.replies.size}/${BURST} offers in ${Date.now() - t0} ms, ${r.answeredFirstRound} without retransmission`,
    );
    assert.equal(r.replies.size, BURST);
    for (let i = 0; i < BURST; i++) {
      const p = parsePacket(r.replies.get(0x20000000 + i)!);
      assert.equal(p.mac, burstMac(i));
      assert.equal(p.yiaddr, planned.get(burstMac(i)));
      assert.deepEqual([...p.options.get(53)!], [2]);
      assert.deepEqual([...p.options.get(61)!], [1, ...macBytes(burstMac(i))]);
    }
  });

  it('answers PXE ROM DISCOVERs (arch 0 and 7) with boot file and next-server, and stays up', () => {
    const r = rawClient([buildPacket({ xid: 0x30000000, mac: PXE_MAC, options: pxeOptions(1, 0) })], {
      rounds: 3,
      intervalMs: 1000,
    });
    const bios = parsePacket(r.replies.get(0x30000000)!);
    assert.equal(bios.yiaddr, planned.get(PXE_MAC));
    assert.equal(bios.file, 'undionly.kpxe');
    assert.equal(bios.siaddr, pair.serverIp);
    assert.equal(bios.options.get(67)?.toString(), 'undionly.kpxe');
    assert.equal(bios.options.get(66)?.toString(), pair.serverIp);
    assert.equal(bios.options.get(60)?.toString(), 'PXEClient');
    assert.deepEqual([...(bios.options.get(97) ?? [])], uuid);
    assert.deepEqual([...(bios.options.get(43) ?? [])], [6, 1, 8, 255]);

    const uefi = rawClient([buildPacket({ xid: 0x30000001, mac: PXE_MAC, options: pxeOptions(1, 7) })], {
      rounds: 3,
      intervalMs: 1000,
    });
    const u = parsePacket(uefi.replies.get(0x30000001)!);
    assert.equal(u.file, 'ipxe.efi');
    assert.equal(u.siaddr, pair.serverIp);

    // The rest of the exchange: the ROM requests the offered address (ACK), or another (NAK).
    const ok: [number, OptionValue][] = [
      ...pxeOptions(3, 0),
      [50, planned.get(PXE_MAC)!.split('.').map(Number)],
    ];
    ok.push([54, pair.serverIp.split('.').map(Number)]);
    const bad: [number, OptionValue][] = [
      ...pxeOptions(3, 0),
      [50, [192, 0, 2, 9]],
      [54, pair.serverIp.split('.').map(Number)],
    ];
    const req = rawClient(
      [
        buildPacket({ xid: 0x30000002, mac: PXE_MAC, options: ok }),
        buildPacket({ xid: 0x30000003, mac: PXE_MAC, options: bad }),
      ],
      { rounds: 3, intervalMs: 1000 },
    );
    const ack = parsePacket(req.replies.get(0x30000002)!);
    assert.deepEqual([...ack.options.get(53)!], [5]);
    assert.equal(ack.yiaddr, planned.get(PXE_MAC));
    assert.equal(ack.file, 'undionly.kpxe');
    const nak = parsePacket(req.replies.get(0x30000003)!);
    assert.deepEqual([...nak.options.get(53)!], [6]);
    assert.equal(nak.yiaddr, '0.0.0.0');

    assert.ok(daemon.alive(), daemon.stderr());
    const after = rawClient([discover(UDHCPC_MAC, 0x30000004)], { rounds: 3, intervalMs: 1000 });
    assert.equal(parsePacket(after.replies.get(0x30000004)!).yiaddr, planned.get(UDHCPC_MAC));

    const trail = events(PXE_MAC).map((e) => `${e.type} ${e.detail}`);
    for (const want of [
      'dhcp.discover bios-pxe',
      'dhcp.offer bios-pxe',
      'dhcp.discover uefi-pxe',
      'dhcp.ack bios-pxe',
    ]) {
      assert.ok(trail.includes(want), `${want} in ${trail.join(', ')}`);
    }
    assert.ok(trail.some((e) => e.startsWith('dhcp.nak requested 192.0.2.9')));
  });

  it('survives malformed packets and keeps answering', () => {
    let seed = 7;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return Math.floor((seed / 0x7fffffff) * 256);
    };
    const good = discover(UDHCPC_MAC, 0x40000000);
    const everyOption: [number, OptionValue][] = [[53, [1]]];
    for (let c = 1; c < 255; c++) if (c !== 53) everyOption.push([c, Array.from({ length: c % 7 }, rand)]);
    const bad = [
      good.subarray(0, 100),
      Buffer.from([1]),
      Buffer.from(Array.from({ length: 400 }, rand)),
      Buffer.from(Array.from({ length: 1400 }, rand)),
      Buffer.concat([good.subarray(0, 243), Buffer.from([12, 200, 65, 66])]),
      buildPacket({ op: 2, xid: 0x40000001, mac: UDHCPC_MAC, options: [[53, [2]]] }),
      buildPacket({ htype: 6, xid: 0x40000002, mac: UDHCPC_MAC, options: [[53, [1]]] }),
      buildPacket({ xid: 0x40000003, mac: UDHCPC_MAC, options: everyOption }),
      buildPacket({
        xid: 0x40000004,
        mac: UDHCPC_MAC,
        options: [
          [53, [1]],
          [93, [7]],
          [97, [0, 1]],
          [77, [200, 1]],
        ],
      }),
    ];
    const errorsBefore = events().filter((e) => e.type === 'dhcp.error').length;
    const r = rawClient(bad, { rounds: 1, intervalMs: 500 });
    // The mangled-but-parseable ones (bad 93/97/77 values) are still a known MAC's DISCOVER.
    assert.deepEqual([...r.replies.keys()].sort(), [0x40000004]);
    assert.ok(daemon.alive(), daemon.stderr());
    const again = rawClient([good], { rounds: 3, intervalMs: 1000 });
    assert.equal(parsePacket(again.replies.get(0x40000000)!).yiaddr, planned.get(UDHCPC_MAC));
    const errors = events().filter((e) => e.type === 'dhcp.error');
    // each is told, except that a sender with no planned MAC is told once per interval
    const fresh = errors.slice(errorsBefore);
    assert.ok(fresh.length >= 1, JSON.stringify(fresh));
    assert.ok(fresh.filter((e) => e.mac === null).length <= 1, JSON.stringify(fresh));
    assert.ok(errors.every((e) => /^malformed packet: /.test(e.detail ?? '')));
  });

  it('all of it took a bounded time', (t) => {
    t.diagnostic(`interop tests took ${Date.now() - started} ms`);
    assert.ok(daemon.alive());
  });
});
