import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BootTracker, noSshReason } from '../../../src/lib/runtime/boot-tracker.js';

const vms = [
  { name: 'vm-a-1', mac: '00:16:3e:00:00:01' },
  { name: 'vm-a-2', mac: '00:16:3e:00:00:02' },
  { name: 'vm-a-3', mac: '00:16:3e:00:00:03' },
];

describe('boot tracker', () => {
  it('follows each VM through its boot from the service node events', () => {
    const t = new BootTracker(vms);
    assert.equal(t.summary(), '3 pending');
    for (const v of vms) t.launched(v.mac, 0);
    t.event({ t: 1000, type: 'dhcp.discover', mac: vms[0].mac });
    t.event({ t: 1100, type: 'dhcp.ack', mac: vms[0].mac });
    t.event({ t: 1200, type: 'http.script', mac: vms[0].mac });
    t.event({ t: 1300, type: 'dhcp.discover', mac: vms[1].mac });
    // A late or repeated event never moves a VM back.
    t.event({ t: 1400, type: 'dhcp.request', mac: vms[0].mac });
    // Unknown MACs and events without a MAC are ignored.
    t.event({ t: 1500, type: 'dhcp.ack', mac: '00:16:3e:00:00:99' });
    t.event({ t: 1500, type: 'tftp.get', mac: null });
    assert.deepEqual(t.counts(), { script: 1, dhcp: 1, launched: 1 });
    assert.equal(t.summary(), '1 script, 1 dhcp, 1 launched');
    assert.equal(t.eta(1500), null, 'no ETA before a first VM is done');
    t.sshUp(vms[0].mac, 20_000);
    t.failed(vms[2].mac, 21_000, 'no DHCP request within 60 s');
    assert.equal(t.eta(25_000), 0, 'vm-a-2 has been booting longer than the median');
    assert.equal(t.eta(5_000), 15);
    t.event({ t: 22_000, type: 'http.kernel', mac: vms[2].mac });
    assert.equal(t.vms()[2].state, 'failed', 'a failed VM stays failed');
    assert.equal(t.vms()[2].reason, 'no DHCP request within 60 s');
    assert.equal(t.done(), false);
    t.sshUp(vms[1].mac, 30_000);
    assert.equal(t.done(), true);
    assert.equal(t.summary(), '1 failed, 2 ssh');
  });

  it('keeps the launch time when boot events beat the power command, and retries a failed VM', () => {
    const t = new BootTracker(vms);
    t.event({ t: 500, type: 'dhcp.discover', mac: vms[0].mac });
    t.launched(vms[0].mac, 400);
    assert.equal(t.get(vms[0].mac)?.launchedAt, 400);
    assert.equal(t.get(vms[0].mac)?.state, 'dhcp');
    t.failed(vms[0].mac, 2000, 'no DHCP offer after 4 tries');
    t.retry(vms[1].mac, 2100); // not failed: nothing to retry
    assert.equal(t.get(vms[1].mac)?.attempts, 1);
    t.retry(vms[0].mac, 2100);
    const again = t.get(vms[0].mac)!;
    assert.deepEqual(
      [again.state, again.attempts, again.earlier, again.reason, again.launchedAt],
      ['launched', 2, ['no DHCP offer after 4 tries'], null, 2100],
    );
    t.sshUp(vms[0].mac, 3000);
    assert.equal(t.get(vms[0].mac)?.state, 'ssh');
  });

  it('follows a kept VM booted again as a new boot: its earlier events no longer count', () => {
    const t = new BootTracker(vms);
    t.event({ t: 100, type: 'http.initrd', mac: vms[0].mac });
    t.launched(vms[0].mac, 5000);
    assert.equal(t.get(vms[0].mac)?.state, 'initrd', 'the earlier boot got that far');
    t.bootsAgain(vms[0].mac, 6000);
    assert.deepEqual([t.get(vms[0].mac)?.state, t.get(vms[0].mac)?.launchedAt], ['launched', 6000]);
    t.event({ t: 6500, type: 'dhcp.discover', mac: vms[0].mac });
    assert.equal(t.get(vms[0].mac)?.state, 'dhcp', 'the new boot moves it forward');
    t.sshUp(vms[1].mac, 7000);
    t.bootsAgain(vms[1].mac, 8000);
    assert.equal(t.get(vms[1].mac)?.state, 'ssh', 'a VM up is not taken back');
  });
});

describe('boot deadlines that follow progress', () => {
  const rule = { bootTimeoutMs: 60_000, stallMs: 30_000, maxBootMs: 240_000 };
  const [a, b, c] = vms.map((v) => v.mac);

  it('gives every VM its boot timeout from its launch, and nothing before the launch', () => {
    const t = new BootTracker(vms);
    assert.equal(t.deadline(a, rule), Number.POSITIVE_INFINITY);
    t.launched(a, 1000);
    assert.equal(t.deadline(a, rule), 61_000);
  });

  it('holds off the deadline of a VM that moves forward, and of one whose peers do (queued for its turn)', () => {
    const t = new BootTracker(vms);
    for (const m of [a, b, c]) t.launched(m, 0);
    // a moves on late: its own progress keeps it
    t.event({ t: 50_000, type: 'http.initrd', mac: a });
    assert.equal(t.deadline(a, rule), 80_000);
    // c has not moved since its launch, but its peers did: it waits its turn
    assert.equal(t.deadline(c, rule), 80_000);
    // the host says where a is now, a step no service node sees
    t.hostReports(a, 'booting', 70_000);
    assert.equal(t.get(a)?.state, 'booting');
    assert.equal(t.deadline(a, rule), 100_000);
    // a later report of an earlier step is not progress
    t.hostReports(a, 'kernel', 90_000);
    assert.equal(t.deadline(a, rule), 100_000);
    t.sshUp(b, 95_000);
    assert.equal(t.deadline(c, rule), 125_000, 'a peer reaching SSH is progress too');
  });

  it('never past maxBootMs from the launch, however the others move', () => {
    const t = new BootTracker(vms);
    t.launched(a, 0);
    t.launched(b, 0);
    const steps: [string, number][] = [
      ['dhcp', 50],
      ['script', 100],
      ['kernel', 150],
      ['initrd', 200],
      ['booting', 230],
    ];
    for (const [step, s] of steps) t.hostReports(b, step, s * 1000);
    assert.equal(t.deadline(b, rule), 240_000, 'b itself keeps moving, and still stops at the cap');
    assert.equal(t.deadline(a, rule), 240_000);
  });

  it('a power reset starts the clock again; the reason says how long it stood still', () => {
    const t = new BootTracker(vms);
    t.launched(a, 0);
    t.event({ t: 5000, type: 'http.kernel', mac: a });
    t.failed(a, 70_000, noSshReason(t.get(a)!, 70_000));
    assert.equal(t.get(a)?.reason, 'no SSH after 70 s (last step: kernel, no progress for 65 s)');
    t.retry(a, 80_000);
    assert.equal(t.deadline(a, rule), 140_000);
  });
});
