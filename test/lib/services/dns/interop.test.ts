// dig against the daemon in a network namespace, including forwarding to an upstream that lives
// in the client namespace (so nothing leaves the namespaces).
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ServiceNodeInput } from '../../../../src/lib/services/config.js';
import { daemonInNs, type RunningDaemon } from '../../../helpers/daemon.js';
import { type NsPair, needTools, nsPair } from '../../../helpers/netns.js';

const skip = needTools('busybox', 'dig', 'curl');

/** Answers every A query with 192.0.2.53; prints "ready" once bound. */
const fakeUpstream = (ip: string) => `
const { UDPServer, Packet } = require('dns2');
const s = new UDPServer({ type: 'udp4' });
s.on('request', (req, send) => {
  const res = Packet.createResponseFromRequest(req);
  res.header.ra = 1;
  const [q] = req.questions;
  if (q.type === Packet.TYPE.A) res.answers.push({ name: q.name, type: 1, class: 1, ttl: 30, address: '192.0.2.53' });
  send(res).catch(() => {});
});
s.bind(53, '${ip}', () => console.log('ready'));
`;

describe('DNS interop: dig in a namespace', { skip }, () => {
  let pair: NsPair;
  let daemon: RunningDaemon;
  let forwarding: RunningDaemon;
  let upstream: ChildProcess;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-dns-ns-'));
    pair = nsPair('dns', '10.213.252');
    const config: ServiceNodeInput = {
      name: 'kb-svc.nancy.grid5000.fr',
      site: 'nancy',
      domain: 'nancy.grid5000.fr',
      ip: pair.serverIp,
      interface: pair.serverIf,
      network: { subnet: '10.213.252.0/24', gateway: pair.serverIp, dns: [pair.serverIp] },
      roles: ['tftp', 'http', 'dns'],
      tftpRoot: dir,
      httpRoot: dir,
      boot: { deploy: { kernel: 'vmlinuz', initrd: 'initrd.img' } },
      nodes: [
        {
          mac: '00:16:3e:fc:00:02',
          ip: pair.clientIp,
          hostname: 'graphene-1',
          fqdn: 'graphene-1.nancy.grid5000.fr',
        },
      ],
      dns: {
        records: [
          { name: 'kb-svc.nancy.grid5000.fr', ip: pair.serverIp },
          { name: 'vm-1.nancy.grid5000.fr', ip: '10.213.252.50' },
        ],
      },
    };
    daemon = await daemonInNs(pair.server, config);
    upstream = pair.spawn(pair.client, [process.execPath, '-e', fakeUpstream(pair.clientIp)]);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('fake upstream did not start')), 10_000);
      upstream.stdout?.on('data', (d) => {
        if (String(d).includes('ready')) {
          clearTimeout(t);
          resolve();
        }
      });
      upstream.on('exit', (code) => reject(new Error(`fake upstream exited ${code}`)));
    });
    forwarding = await daemonInNs(pair.server, {
      ...config,
      roles: ['dns'],
      ports: { dns: 5353, events: 8068 },
      dns: { ...config.dns, forward: [pair.clientIp] },
    });
  });

  after(async () => {
    await daemon?.stop();
    await forwarding?.stop();
    upstream?.kill();
    pair?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const dig = (...args: string[]) =>
    pair.exec(pair.client, ['dig', `@${pair.serverIp}`, '+time=2', '+tries=1', ...args], {
      timeoutMs: 15_000,
    });
  const short = (...args: string[]) =>
    dig('+short', ...args)
      .trim()
      .split('\n')
      .filter(Boolean)
      .sort();
  /** Rcode and header flags from dig's full output. */
  const header = (...args: string[]) => {
    const out = dig(...args);
    const status = /status: (\w+)/.exec(out)?.[1];
    const flags = /flags: ([a-z ]+);/.exec(out)?.[1].split(' ') ?? [];
    return { status, flags, out };
  };

  it('answers A for planned names over UDP and TCP', () => {
    assert.deepEqual(short('graphene-1.nancy.grid5000.fr', 'A'), [pair.clientIp]);
    assert.deepEqual(short('vm-1.nancy.grid5000.fr', 'A'), ['10.213.252.50']);
    assert.deepEqual(short('+tcp', 'kb-svc.nancy.grid5000.fr', 'A'), [pair.serverIp]);
  });

  it('answers PTR for planned addresses', () => {
    assert.deepEqual(short('-x', pair.clientIp), ['graphene-1.nancy.grid5000.fr.']);
    assert.deepEqual(short('-x', '10.213.252.50'), ['vm-1.nancy.grid5000.fr.']);
    assert.deepEqual(short('-x', pair.serverIp), ['kb-svc.nancy.grid5000.fr.']);
  });

  it('is authoritative: SOA, NS, and NXDOMAIN with the aa flag', () => {
    assert.deepEqual(short('nancy.grid5000.fr', 'NS'), ['kb-svc.nancy.grid5000.fr.']);
    assert.match(
      short('nancy.grid5000.fr', 'SOA')[0],
      /^kb-svc\.nancy\.grid5000\.fr\. hostmaster\.nancy\.grid5000\.fr\. \d+ /,
    );
    const ok = header('graphene-1.nancy.grid5000.fr', 'A');
    assert.equal(ok.status, 'NOERROR');
    assert.ok(ok.flags.includes('aa'), ok.out);
    const nx = header('nope.nancy.grid5000.fr', 'A');
    assert.equal(nx.status, 'NXDOMAIN');
    assert.ok(nx.flags.includes('aa'), nx.out);
  });

  it('refuses outside names when it has no forwarder, and stays up', () => {
    const r = header('www.example.org', 'A');
    assert.equal(r.status, 'REFUSED', r.out);
    assert.ok(!r.flags.includes('aa'));
    assert.ok(daemon.alive(), daemon.stderr());
  });

  it('forwards outside names to its upstream when it has one', () => {
    assert.deepEqual(short('-p', '5353', 'www.example.org', 'A'), ['192.0.2.53']);
    // Its own names it still answers itself.
    assert.deepEqual(short('-p', '5353', 'graphene-1.nancy.grid5000.fr', 'A'), [pair.clientIp]);
    assert.ok(forwarding.alive(), forwarding.stderr());
  });
});
