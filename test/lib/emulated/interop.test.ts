// Emulated VMs against the real service daemon, in network namespaces: the daemon (dhcp+http)
// runs in the server namespace with 50 planned nodes; one emulated group process runs the 50 VMs
// in the client namespace (2 injected as "fails to boot"); a controller script there checks SSH.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BootEvent } from '../../../src/lib/services/events.js';
import { testKeyPair } from '../../helpers/keys.js';
import { needTools } from '../../helpers/netns.js';
import { type Bench, type ClientResult, KERNEL_BYTES, startBench } from './setup.js';

const skip = needTools('busybox');
const N = 50;
const FAILING = new Set(['emu-7', 'emu-23']);

describe('emulated VMs boot from the service daemon and serve SSH', { skip }, () => {
  let bench: Bench;

  before(async () => {
    bench = await startBench({
      tag: 'emu',
      prefix24: '10.213.240',
      n: N,
      macByte: 0x0e,
      faults: { forced: Object.fromEntries([...FAILING].map((n) => [n, 'fail-boot' as const])) },
    });
  });

  after(async () => {
    await bench?.stop();
  });

  it('reports exactly the injected VMs failed, with a reason, and the rest on SSH', (t) => {
    const stats = bench.lines.at(-1)?.stats as { rssBytes: number } | undefined;
    t.diagnostic(
      `${N} VMs: all outcomes in ${bench.allMs} ms; group RSS ${Math.round((stats?.rssBytes ?? 0) / 2 ** 20)} MiB`,
    );
    assert.equal(bench.outcome.length, N);
    const failed = bench.outcome.filter((o) => o.state === 'failed');
    assert.deepEqual(failed.map((o) => o.name).sort(), [...FAILING].sort(), JSON.stringify(failed));
    for (const f of failed) assert.match(f.reason ?? '', /fails to boot/);
    for (const o of bench.outcome.filter((x) => x.state === 'ssh')) {
      assert.equal(o.ip, bench.vms.find((v) => v.name === o.name)!.ip);
      assert.ok(o.bootMs >= o.modelledMs * 0.01 * 0.9, `${o.name} ${o.bootMs} vs ${o.modelledMs}`);
    }
    assert.ok(
      bench.lines.some((l) => l.progress),
      'progress lines before the outcome',
    );
  });

  it('did the real exchange: DHCP ack of the planned IP, script, kernel and initrd per MAC', () => {
    const events = bench.events();
    const byMac = new Map<string, BootEvent[]>();
    for (const e of events) if (e.mac) byMac.set(e.mac, [...(byMac.get(e.mac) ?? []), e]);
    for (const v of bench.vms) {
      const ev = byMac.get(v.mac) ?? [];
      if (FAILING.has(v.name)) {
        assert.deepEqual(ev, [], `${v.name} never sent DHCP`);
        continue;
      }
      const types = ev.map((e) => e.type);
      for (const want of [
        'dhcp.discover',
        'dhcp.offer',
        'dhcp.request',
        'dhcp.ack',
        'http.script',
        'http.kernel',
        'http.initrd',
      ]) {
        assert.ok(types.includes(want), `${v.name}: ${want} in ${types.join(', ')}`);
      }
      assert.equal(ev.find((e) => e.type === 'dhcp.ack')?.ip, v.ip);
      assert.equal(ev.find((e) => e.type === 'dhcp.discover')?.detail, 'ipxe');
      assert.equal(ev.find((e) => e.type === 'http.kernel')?.detail, `deploy/vmlinuz ${KERNEL_BYTES} bytes`);
      assert.equal(ev.find((e) => e.type === 'http.initrd')?.ip, v.ip);
    }
  });

  it('answers SSH with the testbed key: hostname on all, identify on some, 127 for unknown', () => {
    const ok = bench.vms.filter((v) => !FAILING.has(v.name));
    const r = bench.client({
      exec: [
        ...ok.map((v) => ({ ip: v.ip, command: 'hostname' })),
        ...ok.slice(0, 3).map((v) => ({ ip: v.ip, command: 'kb-agent identify' })),
        { ip: ok[0].ip, command: 'uname -r' },
        { ip: ok[0].ip, command: 'true' },
        { ip: ok[0].ip, command: 'rm -rf /' },
        { ip: ok[0].ip, command: 'kb-agent frobnicate' },
      ],
    });
    const hostnames = r.exec.slice(0, ok.length);
    for (const [i, h] of hostnames.entries()) {
      assert.equal(h.code, 0, JSON.stringify(h));
      assert.equal(h.stdout, `${ok[i].name}\n`);
    }
    for (const [i, h] of r.exec.slice(ok.length, ok.length + 3).entries()) {
      const id = JSON.parse(h.stdout);
      assert.deepEqual(
        { name: id.name, mac: id.mac, ip: id.ip, env: id.env },
        { name: ok[i].name, mac: ok[i].mac, ip: ok[i].ip, env: 'deploy' },
      );
      assert.match(id.kernel, /emulated/);
      assert.ok(id.uptime >= 0);
    }
    const [uname, yes, unknown, badSub] = r.exec.slice(ok.length + 3);
    assert.equal(badSub.code, 2, 'an unknown agent subcommand exits 2 with usage, as the real agent');
    assert.match(badSub.stderr, /usage: kb-agent/);
    assert.match(uname.stdout, /emulated/);
    assert.equal(yes.code, 0);
    assert.equal(unknown.code, 127);
    assert.match(unknown.stderr, /command not found/);
  });

  it('rejects another key', () => {
    const other = testKeyPair();
    const r: ClientResult = bench.client({
      privateKey: other.private,
      exec: [{ ip: bench.vms[0].ip, command: 'true' }],
    });
    assert.equal(r.exec[0].code, null);
    assert.match(r.exec[0].error ?? '', /authentication/i);
  });

  it('receives a chain: every node hashes the same bytes and forwards them, the last stores them', () => {
    const ips = bench.vms
      .filter((v) => !FAILING.has(v.name))
      .slice(0, 3)
      .map((v) => v.ip);
    const r = bench.client({ exec: [], chain: { ips, port: 7000, bytes: 3_000_000 } });
    const chain = r.chain!;
    for (const rec of chain.receivers) {
      assert.equal(rec.code, 0, JSON.stringify(rec));
      const last = JSON.parse(rec.stdout.trim().split('\n').at(-1)!);
      assert.equal(last.bytes, 3_000_000);
      assert.equal(last.sha256, chain.sha256);
    }
    const report = bench.client({ exec: [{ ip: ips[2], command: 'kb-agent report' }] });
    assert.deepEqual(JSON.parse(report.exec[0].stdout).disk, { bytes: 3_000_000, sha256: chain.sha256 });
  });
});
