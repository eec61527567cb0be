// Fault campaign, fuzz case: 10,000 malformed DHCP, TFTP and DNS datagrams from a seeded fuzzer
// against each backend. Asserts: the server is alive; no DHCP reply went to a MAC that is not
// planned (or to a chaddr other than the request's); TFTP sent no byte from outside its root; a
// valid DISCOVER, DNS query and TFTP read still get their answers; the builtin daemon's memory and
// event log stayed bounded. Replay a failure with KB_FUZZ_SEED=<the seed it printed>;
// KB_FUZZ_LOG=<file> keeps the builtin daemon's stderr there.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { serviceNodeConfigSchema } from '../../src/lib/services/config.js';
import { type DnsmasqBackend, startDnsmasqBackend } from '../../src/lib/services/dnsmasq/process.js';
import { NOISY_EVERY_MS } from '../../src/lib/services/events.js';
import { root } from '../helpers/cli.js';
import { daemonInNs, type RunningDaemon } from '../helpers/daemon.js';
import { type NsPair, needTools, nsPair, skipUnlessRoot } from '../helpers/netns.js';
import { campaign, Rng } from './fuzz.js';
import type { SenderJob, SenderReport } from './fuzz-sender.js';

const SEED = Number(process.env.KB_FUZZ_SEED ?? 20261205);
const COUNT = 10_000;
const RATE = 2500;
const seedNote = `KB_FUZZ_SEED=${SEED}`;

const knownMac = (i: number) => `52:54:00:fa:00:${(0x10 + i).toString(16)}`;
const KNOWN = Array.from({ length: 8 }, (_, i) => knownMac(i));
const UNKNOWN = [
  ...Array.from({ length: 6 }, (_, i) => `52:54:00:fa:ff:${(0x10 + i).toString(16)}`),
  'ff:ff:ff:ff:ff:ff',
  '00:00:00:00:00:00',
];
const SECRET_MARK = 'KB-FUZZ-SECRET';

/** Printable bytes without line ends (netascii leaves them alone), distinct per file. */
function content(seed: number, n: number): Buffer {
  const rng = new Rng(seed);
  return Buffer.from(Array.from({ length: n }, () => 0x21 + rng.int(90)));
}

/** A TFTP root with three files, a file beside it and a symlink leading out to it. */
async function tftpTree(dir: string, followSymlink: boolean) {
  const tftpRoot = join(dir, 'tftp');
  await mkdir(join(tftpRoot, 'pxelinux.cfg'), { recursive: true });
  const files = { 'undionly.kpxe': 3000, 'ipxe.efi': 1500, 'pxelinux.cfg/default': 300 };
  let n = 1;
  for (const [name, size] of Object.entries(files))
    await writeFile(join(tftpRoot, name), content(SEED + n++, size));
  await writeFile(join(dir, 'secret.txt'), `${SECRET_MARK}\n`.repeat(200));
  if (followSymlink) await symlink('../secret.txt', join(tftpRoot, 'escape'));
  const outside = [
    '../secret.txt',
    '../../../../../../etc/passwd',
    '/etc/passwd',
    join(dir, 'secret.txt'),
    `${tftpRoot}/../secret.txt`,
    'pxelinux.cfg/../../secret.txt',
    './../secret.txt',
    '..\\secret.txt',
    '%2e%2e/secret.txt',
    '....//secret.txt',
    '..',
    '/',
    ...(followSymlink ? ['escape', `${tftpRoot}/escape`] : []),
  ];
  return {
    tftpRoot,
    inRoot: Object.keys(files),
    rootFiles: Object.keys(files).map((f) => join(tftpRoot, f)),
    outside,
  };
}

/**
 * Runs the sender in `ns`. Asynchronously: dnsmasq logs to a pipe this process reads, and a
 * blocked event loop would fill it and stall dnsmasq.
 */
async function runSender(ns: string, job: SenderJob): Promise<SenderReport> {
  const child = spawn(
    'ip',
    ['netns', 'exec', ns, process.execPath, '--import', 'tsx', 'test/faults/fuzz-sender.ts'],
    {
      cwd: root,
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    err += d;
  });
  child.stdin.end(JSON.stringify(job));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearTimeout(timer);
  if (code !== 0) throw new Error(`fuzz sender exited ${code} (${seedNote}): ${err.slice(-2000)}`);
  return JSON.parse(out) as SenderReport;
}

const rssKiB = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);

/** The assertions both backends share. */
function assertServed(r: SenderReport, check: Pick<SenderJob['check'], 'ip' | 'dnsIp'>) {
  const total = r.sent.dhcp + r.sent.tftp + r.sent.dns;
  assert.equal(total, COUNT, seedNote);
  assert.deepEqual(r.dhcp.foreign, [], `DHCP replies to MACs that are not planned (${seedNote})`);
  assert.deepEqual(r.dhcp.wrongAddress, [], `DHCP offered a MAC another address than its own (${seedNote})`);
  assert.deepEqual(r.tftp.leaked, [], `TFTP sent bytes from outside its root (${seedNote})`);
  assert.deepEqual(r.dns.toResponses, [], `DNS answered a response (${seedNote})`);
  assert.equal(r.after.offer, check.ip, `no OFFER to a planned MAC after the fuzz (${seedNote})`);
  assert.equal(r.after.dns, check.dnsIp, `no DNS answer after the fuzz (${seedNote})`);
  assert.equal(r.after.tftp, 'ok', `no TFTP file after the fuzz (${seedNote})`);
  // Not vacuous: the fuzz did reach the three servers and got some answers back.
  assert.ok(r.dhcp.toUnknown > 500 && r.dhcp.toKnown > 500, JSON.stringify(r.dhcp));
  assert.ok(
    r.dhcp.replies > 0 && r.tftp.data > 0 && r.tftp.error > 0 && r.dns.replies > 0,
    JSON.stringify(r),
  );
}

/** Figures for the README's fault campaign table. */
function summary(r: SenderReport): string {
  const s = r.sent;
  return (
    `seed ${SEED}: ${s.dhcp} DHCP (${r.dhcp.toUnknown} to unknown MACs) + ${s.tftp} TFTP + ${s.dns} DNS` +
    ` + ${s.tftpTransfer} at TFTP transfers in ${r.durationMs} ms; answers: ${r.dhcp.replies} DHCP,` +
    ` ${r.tftp.data} TFTP DATA, ${r.tftp.error} TFTP ERROR, ${r.dns.replies} DNS; after: OFFER ${r.after.offer},` +
    ` DNS ${r.after.dns}, TFTP ${r.after.tftp} in ${r.after.tftpWaitMs} ms; foreign DHCP` +
    ` replies ${r.dhcp.foreign.length}, TFTP leaks ${r.tftp.leaked.length}`
  );
}

describe('fuzz generator', () => {
  const targets = {
    dhcp: { known: KNOWN, unknown: UNKNOWN, server: '127.0.0.1', addresses: ['127.0.1.10'] },
    tftp: { inRoot: ['a'], outside: ['../b'] },
    dnsNames: ['n1.fuzz.kb.test'],
  };

  it('gives the same packets for the same seed, and others for another seed', () => {
    const a = campaign(SEED, 2000, targets);
    const b = campaign(SEED, 2000, targets);
    const c = campaign(SEED + 1, 2000, targets);
    assert.deepEqual(
      a.map((p) => p.bytes.toString('hex')),
      b.map((p) => p.bytes.toString('hex')),
    );
    assert.notDeepEqual(
      a.map((p) => p.bytes.toString('hex')),
      c.map((p) => p.bytes.toString('hex')),
    );
    const protos = new Set(a.map((p) => p.proto));
    assert.deepEqual([...protos].sort(), ['dhcp', 'dns', 'tftp']);
    // Every generator is used: a kind that never comes up tests nothing.
    const kinds = new Set(a.map((p) => `${p.proto}:${p.kind.split('/')[0]}`));
    assert.ok(kinds.size >= 35, [...kinds].join(' '));
  });
});

describe('fault campaign: fuzz against the builtin daemon', {
  skip: skipUnlessRoot,
  timeout: 120_000,
}, () => {
  // A namespace with loopback only: the daemon and the sender share it, so the sender can bind
  // the DHCP ports to see every reply, and nothing of it reaches the machine's own network.
  const ns = `kbt-fuzz-lo${process.pid % 100000}`;
  let dir: string;
  let daemon: RunningDaemon;
  let tree: Awaited<ReturnType<typeof tftpTree>>;
  const secret = randomBytes(32).toString('hex');
  const planned = KNOWN.map((mac, i) => ({ mac, ip: `127.0.1.${10 + i}` }));

  before(async () => {
    spawnSync('ip', ['netns', 'del', ns]);
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    dir = await mkdtemp(join(tmpdir(), 'kb-fuzz-'));
    tree = await tftpTree(dir, true);
    daemon = await daemonInNs(ns, {
      name: 'svc.fuzz.kb.test',
      site: 'fuzz',
      domain: 'fuzz.kb.test',
      ip: '127.0.0.1',
      network: { subnet: '127.0.0.0/8', gateway: '127.0.0.1', dns: ['127.0.0.1'] },
      roles: ['dhcp', 'tftp', 'dns'],
      // DHCP off 67, which the sender binds to see replies sent to a relay (giaddr:67).
      ports: { dhcp: 1067, tftp: 69, dns: 53, events: 8067 },
      tftpRoot: tree.tftpRoot,
      httpRoot: dir,
      boot: { deploy: { kernel: 'k', initrd: 'i' } },
      control: { secret },
      nodes: planned.map(({ mac, ip }, i) => ({ mac, ip, hostname: `n${i}`, fqdn: `n${i}.fuzz.kb.test` })),
    });
  });

  after(async () => {
    await daemon?.stop();
    spawnSync('ip', ['netns', 'del', ns]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it(`survives ${COUNT} fuzzed packets, answers no unknown MAC, serves nothing outside its root`, async (t) => {
    const rssBefore = rssKiB(daemon.pid);
    const check = { mac: KNOWN[0], ip: planned[0].ip, dnsName: 'n0.fuzz.kb.test', dnsIp: planned[0].ip };
    const r = await runSender(ns, {
      seed: SEED,
      count: COUNT,
      ratePerSec: RATE,
      server: { host: '127.0.0.1', dhcpPort: 1067, tftpPort: 69, dnsPort: 53 },
      targets: {
        dhcp: {
          known: KNOWN,
          unknown: UNKNOWN,
          server: '127.0.0.1',
          addresses: [
            ...planned.map((p) => p.ip),
            '127.0.0.1',
            '127.200.0.1',
            '10.9.9.9',
            '0.0.0.0',
            '255.255.255.255',
          ],
        },
        tftp: { inRoot: tree.inRoot, outside: tree.outside },
        dnsNames: [
          'n0.fuzz.kb.test',
          'svc.fuzz.kb.test',
          'fuzz.kb.test',
          'example.com',
          '10.1.0.127.in-addr.arpa',
          'x',
        ],
      },
      rootFiles: tree.rootFiles,
      planned: Object.fromEntries(planned.map((p) => [p.mac, p.ip])),
      markers: [SECRET_MARK, 'root:x:0:0'],
      check: { ...check, tftpFile: 'undionly.kpxe', tftpPath: tree.rootFiles[0] },
      events: { url: 'http://127.0.0.1:8067/events', secret },
    });
    const rssAfter = rssKiB(daemon.pid);
    t.diagnostic(summary(r));
    t.diagnostic(
      `daemon RSS ${Math.round(rssBefore / 1024)} -> ${Math.round(rssAfter / 1024)} MiB; events ${JSON.stringify(r.events)}`,
    );
    if (process.env.KB_FUZZ_LOG) writeFileSync(process.env.KB_FUZZ_LOG, daemon.stderr());
    assert.ok(daemon.alive(), `daemon died (${seedNote}): ${daemon.stderr()}`);
    assertServed(r, check);
    assert.ok(rssAfter - rssBefore < 200 * 1024, `RSS grew by ${rssAfter - rssBefore} KiB (${seedNote})`);
    // The refused-request throttle: the same (MAC, reason) at most once per NOISY_EVERY_MS.
    const ev = r.events!;
    const windows = Math.ceil(r.durationMs / NOISY_EVERY_MS) + 1;
    assert.ok(
      ev.ignoredMaxPerKey <= windows,
      `${ev.ignoredMaxPerKey} dhcp.ignored for one MAC and reason (${seedNote})`,
    );
    assert.ok((ev.byType['dhcp.ignored'] ?? 0) < r.dhcp.toUnknown / 4, JSON.stringify(ev.byType));
    // No packet fans out into several events, and the log (10,000 kept) is far from full: about
    // one event per DHCP packet (malformed, ignored or served) and per TFTP request.
    assert.ok(ev.total < COUNT * 0.6, `${ev.total} events for ${COUNT} packets (${seedNote})`);
    // and no handler threw (the DHCP role's catch-all reports "internal").
    assert.doesNotMatch(daemon.stderr(), /failed: .*Error|uncaught|internal:/i, daemon.stderr().slice(-2000));
    // With the fuzz's transfers still retrying, SIGTERM still stops it, and promptly.
    process.kill(daemon.pid, 'SIGTERM');
    for (let i = 0; i < 50 && daemon.alive(); i++) await new Promise((res) => setTimeout(res, 100));
    assert.ok(!daemon.alive(), `the daemon ignored SIGTERM after the fuzz (${seedNote})`);
  });
});

describe('fault campaign: fuzz against the dnsmasq backend', {
  skip: needTools('dnsmasq', 'tcpdump'),
  timeout: 120_000,
}, () => {
  const prefix = '10.213.251';
  let pair: NsPair;
  let dir: string;
  let dnsmasq: DnsmasqBackend;
  let tree: Awaited<ReturnType<typeof tftpTree>>;
  const planned = KNOWN.map((mac, i) => ({ mac, ip: `${prefix}.${20 + i}` }));

  before(async () => {
    pair = nsPair('fuzz', prefix);
    // The sender broadcasts a DISCOVER like a booting node: that needs a route.
    execFileSync('ip', ['-n', pair.client, 'route', 'add', 'default', 'dev', pair.clientIf]);
    dir = await mkdtemp(join(tmpdir(), 'kb-fuzz-dnsmasq-'));
    // dnsmasq follows symlinks inside its root (no tftp-secure): the tree it gets has none.
    tree = await tftpTree(dir, false);
    const config = serviceNodeConfigSchema.parse({
      name: 'svc.fuzz.kb.test',
      site: 'fuzz',
      domain: 'fuzz.kb.test',
      ip: pair.serverIp,
      interface: pair.serverIf,
      network: { subnet: `${prefix}.0/24`, gateway: pair.serverIp, dns: [pair.serverIp] },
      roles: ['dhcp', 'tftp', 'dns'],
      tftpRoot: tree.tftpRoot,
      httpRoot: dir,
      boot: { deploy: { kernel: 'vmlinuz', initrd: 'initrd.gz' } },
      nodes: planned.map(({ mac, ip }, i) => ({ mac, ip, hostname: `n${i}`, fqdn: `n${i}.fuzz.kb.test` })),
    });
    dnsmasq = await startDnsmasqBackend(config, {
      prefix: ['ip', 'netns', 'exec', pair.server],
      dir: join(dir, 'run'),
    });
  });

  after(async () => {
    await dnsmasq?.close();
    pair?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it(`survives ${COUNT} fuzzed packets, answers no unknown MAC, serves nothing outside its root`, async (t) => {
    // dnsmasq unicasts most replies to the chaddr's Ethernet address, which the client's veth
    // drops: what leaves dnsmasq is read on the server's side of the wire instead.
    const pcap = join(dir, 'dhcp.pcap');
    const dump = spawn(
      'ip',
      [
        'netns',
        'exec',
        pair.server,
        'tcpdump',
        '-i',
        pair.serverIf,
        '-U',
        '-s',
        '1500',
        '-w',
        pcap,
        'udp src port 67',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    await new Promise<void>((resolve, reject) => {
      let err = '';
      dump.stderr.on('data', (d) => {
        err += d;
        if (/listening on/.test(err)) resolve();
      });
      dump.once('exit', (code) => reject(new Error(`tcpdump exited ${code}: ${err}`)));
    });
    const rssBefore = rssKiB(dnsmasq.pid);
    const check = { mac: KNOWN[0], ip: planned[0].ip, dnsName: 'n0.fuzz.kb.test', dnsIp: planned[0].ip };
    let r: SenderReport;
    try {
      r = await runSender(pair.client, {
        seed: SEED,
        count: COUNT,
        ratePerSec: RATE,
        server: { host: pair.serverIp, dhcpPort: 67, tftpPort: 69, dnsPort: 53 },
        targets: {
          dhcp: {
            known: KNOWN,
            unknown: UNKNOWN,
            server: pair.serverIp,
            addresses: [
              ...planned.map((p) => p.ip),
              pair.serverIp,
              pair.clientIp,
              `${prefix}.200`,
              '10.9.9.9',
              '0.0.0.0',
            ],
          },
          tftp: { inRoot: tree.inRoot, outside: tree.outside },
          dnsNames: ['n0.fuzz.kb.test', 'fuzz.kb.test', 'example.com', `20.251.213.10.in-addr.arpa`, 'x'],
        },
        rootFiles: tree.rootFiles,
        planned: Object.fromEntries(planned.map((p) => [p.mac, p.ip])),
        markers: [SECRET_MARK, 'root:x:0:0'],
        check: { ...check, tftpFile: 'undionly.kpxe', tftpPath: tree.rootFiles[0] },
      });
    } finally {
      await new Promise<void>((resolve) => {
        dump.once('exit', () => resolve());
        dump.kill('SIGINT');
      });
    }
    const rssAfter = rssKiB(dnsmasq.pid);
    const wire = dhcpRepliesIn(readFileSync(pcap));
    const toUnknown = wire.filter((w) => !KNOWN.includes(w.chaddr));
    t.diagnostic(summary(r));
    t.diagnostic(
      `on the wire: ${wire.length} DHCP replies from dnsmasq, ${toUnknown.length} to unknown MACs; RSS ${rssBefore} -> ${rssAfter} KiB`,
    );
    if (process.env.KB_FUZZ_LOG) writeFileSync(process.env.KB_FUZZ_LOG, dnsmasq.log());
    assert.ok(dnsmasq.alive(), `dnsmasq died (${seedNote}): ${dnsmasq.log().slice(-2000)}`);
    assertServed(r, check);
    assert.ok(wire.length > 0 && wire.some((w) => w.chaddr === check.mac), 'the capture saw the valid OFFER');
    assert.deepEqual(toUnknown, [], `dnsmasq answered unknown MACs (${seedNote})`);
    assert.ok(rssAfter - rssBefore < 50 * 1024, `dnsmasq RSS grew by ${rssAfter - rssBefore} KiB`);
  });
});

/** BOOTREPLYs in a pcap file (Ethernet, IPv4, UDP): their xid and chaddr. */
function dhcpRepliesIn(file: Buffer): { xid: number; chaddr: string }[] {
  const out: { xid: number; chaddr: string }[] = [];
  let i = 24;
  while (i + 16 <= file.length) {
    const len = file.readUInt32LE(i + 8);
    const frame = file.subarray(i + 16, i + 16 + len);
    i += 16 + len;
    if (frame.length < 14 + 20 || frame.readUInt16BE(12) !== 0x0800) continue;
    const udp = 14 + (frame[14] & 0x0f) * 4;
    const b = frame.subarray(udp + 8);
    if (b.length < 240 || b[0] !== 2) continue;
    out.push({
      xid: b.readUInt32BE(4),
      chaddr: [...b.subarray(28, 34)].map((x) => x.toString(16).padStart(2, '0')).join(':'),
    });
  }
  return out;
}
