// Injected faults and reboots on emulated VMs, against the real service daemon in namespaces:
// a hang (boots, never serves SSH), a death mid-transfer, a slow link, and a reboot that goes
// back through the boot exchange.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { needTools } from '../../helpers/netns.js';
import { type Bench, startBench } from './setup.js';

const skip = needTools('busybox');

describe('emulated VM faults and reboots', { skip }, () => {
  let bench: Bench;
  const ip = (name: string) => bench.vms.find((v) => v.name === name)!.ip;
  const lastLine = (s: string) => JSON.parse(s.trim().split('\n').at(-1)!);

  before(async () => {
    bench = await startBench({
      tag: 'emuf',
      prefix24: '10.213.241',
      n: 5,
      macByte: 0x1f,
      faults: {
        forced: { 'emu-1': 'hang', 'emu-2': 'die-mid-transfer', 'emu-3': 'slow-link' },
        dieWithinBytes: 200_000,
        slowLinkBytesPerSec: 1_000_000,
      },
    });
  });

  after(async () => {
    await bench?.stop();
  });

  it('reports the hung VM failed after a real boot exchange, and it serves no SSH', () => {
    const byName = new Map(bench.outcome.map((o) => [o.name, o]));
    assert.equal(byName.get('emu-1')?.state, 'failed');
    assert.match(byName.get('emu-1')?.reason ?? '', /hangs/);
    for (const n of ['emu-2', 'emu-3', 'emu-4', 'emu-5']) assert.equal(byName.get(n)?.state, 'ssh', n);
    const hungMac = bench.vms[0].mac;
    assert.ok(bench.events().some((e) => e.mac === hungMac && e.type === 'http.initrd'));
    const r = bench.client({ exec: [{ ip: ip('emu-1'), command: 'true' }] });
    assert.equal(r.exec[0].code, null);
    assert.match(r.exec[0].error ?? '', /ECONNREFUSED/);
  });

  it('drops the SSH connection of a VM that dies mid-transfer', () => {
    const r = bench.client({ chain: { ips: [ip('emu-2')], port: 7000, bytes: 2_000_000 } });
    const rec = r.chain!.receivers[0];
    assert.notEqual(rec.code, 0, JSON.stringify(rec));
    assert.doesNotMatch(rec.stdout, /"done"/);
  });

  it('rate-limits the receive of a VM on a slow link', () => {
    const r = bench.client({ chain: { ips: [ip('emu-3'), ip('emu-4')], port: 7001, bytes: 1_500_000 } });
    const [slow, next] = r.chain!.receivers.map((x) => lastLine(x.stdout));
    assert.equal(slow.sha256, r.chain!.sha256);
    assert.equal(next.sha256, r.chain!.sha256);
    assert.ok(slow.ms >= 1300, `1.5 MB at 1 MB/s took ${slow.ms} ms`);
  });

  it('reboots through the boot exchange again (kexec without it) and serves SSH after', async () => {
    const mac = bench.vms[4].mac;
    const acks = () => bench.events().filter((e) => e.mac === mac && e.type === 'dhcp.ack').length;
    assert.equal(acks(), 1);
    const r = bench.client({ exec: [{ ip: ip('emu-5'), command: 'kb-agent reboot' }] });
    assert.equal(r.exec[0].code, 0);
    assert.deepEqual(JSON.parse(r.exec[0].stdout), { reboot: true });
    // reboot: at most 150 modelled s at a 0.01 scale, plus the exchange
    await new Promise((res) => setTimeout(res, 2500));
    const report = bench.client({ exec: [{ ip: ip('emu-5'), command: 'kb-agent report' }] });
    assert.equal(report.exec[0].code, 0, JSON.stringify(report.exec[0]));
    assert.equal(lastLine(report.exec[0].stdout).boots, 2);
    assert.equal(acks(), 2);
    assert.ok(bench.events().filter((e) => e.mac === mac && e.type === 'http.script').length === 2);
    // kexec: a new boot without the firmware's DHCP and HTTP exchange
    const k = bench.client({ exec: [{ ip: ip('emu-5'), command: 'kb-agent kexec /k /i quiet' }] });
    assert.deepEqual(JSON.parse(k.exec[0].stdout), { kexec: '/k' });
    await new Promise((res) => setTimeout(res, 1200));
    const after = bench.client({ exec: [{ ip: ip('emu-5'), command: 'kb-agent report' }] });
    assert.equal(lastLine(after.exec[0].stdout).boots, 3, JSON.stringify(after.exec[0]));
    assert.equal(acks(), 2);
  });
});
