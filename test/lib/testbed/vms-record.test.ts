// setup's VMs phase records each VM's outcome for status: answering, or failed with its reason;
// with --no-vms it launches nothing and records nothing.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { VmBoot } from '../../../src/lib/runtime/boot-tracker.js';
import { TestbedLayout } from '../../../src/lib/state/layout.js';
import { readVmRecord } from '../../../src/lib/state/vm-record.js';
import type { VmPhasesContext } from '../../../src/lib/testbed/setup/context.js';
import { launchVms } from '../../../src/lib/testbed/setup/vms.js';

const boot = (name: string, state: VmBoot['state'], reason: string | null): VmBoot => ({
  name,
  mac: '02:00:00:00:00:01',
  state,
  launchedAt: 1,
  doneAt: 2,
  advancedAt: 2,
  reason,
  attempts: 1,
  earlier: [],
});

describe("setup's VMs phase record", () => {
  it('records every VM as up or failed with its reason', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kb-vms-record-'));
    try {
      const layout = new TestbedLayout(dir);
      const boots = [
        boot('vm-1', 'ssh', null),
        boot('vm-2', 'failed', 'injected fault: fails to boot (never sends DHCP)'),
        boot('vm-3', 'leased', null),
      ];
      let launches = 0;
      const hosts = {
        accel: null,
        emulatedHosts: 0,
        launchVms: async () => {
          launches++;
          return boots;
        },
        close() {},
      };
      const ctx = (vms: boolean) => ({ store: { layout }, options: { vms } }) as unknown as VmPhasesContext;

      assert.deepEqual(await launchVms(ctx(false), hosts), []);
      assert.equal(launches, 0);
      assert.equal(existsSync(layout.vmsFile), false, '--no-vms records nothing');

      assert.equal(await launchVms(ctx(true), hosts), boots);
      const record = await readVmRecord(layout.vmsFile);
      assert.deepEqual(record?.vms, [
        { name: 'vm-1', outcome: 'up', reason: null },
        { name: 'vm-2', outcome: 'failed', reason: 'injected fault: fails to boot (never sends DHCP)' },
        { name: 'vm-3', outcome: 'failed', reason: 'stopped at leased' },
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
