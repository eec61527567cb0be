// The KVM probe's decisions, with a stand-in for qemu-system-x86_64 (the real probe runs in
// test/interop/qemu-pxe.test.ts).
import assert from 'node:assert/strict';
import { constants } from 'node:fs';
import { access, chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bootMarker } from '../../../src/lib/images/initramfs.js';
import { probeKvm } from '../../../src/lib/images/qemu.js';

let kvm: string | false = false;
try {
  await access('/dev/kvm', constants.R_OK | constants.W_OK);
} catch {
  kvm = 'needs an accessible /dev/kvm (the probe stops there otherwise)';
}

describe('probeKvm', { skip: kvm }, () => {
  let dir: string;
  const fake = async (name: string, body: string) => {
    const file = join(dir, name);
    await writeFile(file, `#!/bin/sh\n${body}\n`);
    await chmod(file, 0o755);
    return file;
  };
  const probe = (binary: string, timeoutMs = 3000) =>
    probeKvm({ binary, kernel: '/k', initrd: '/i', timeoutMs, cacheDir: null });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-qemu-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('says usable when the guest prints the boot marker under -accel kvm', async () => {
    const bin = await fake(
      'boots',
      `case "$*" in *"-accel kvm"*) echo "${bootMarker} hostname=kvm-probe mac=none";; esac\nexec sleep 5`,
    );
    const r = await probe(bin);
    assert.equal(r.usable, true, r.reason);
    assert.match(r.reason, /guest booted in \d+ ms/);
  });

  it('says unusable when the guest hangs (KVM opens but guests do not run)', async () => {
    const r = await probe(await fake('hangs', 'echo "Booting from ROM..."; exec sleep 30'), 500);
    assert.deepEqual(r, { usable: false, reason: 'a guest did not boot under KVM within 0.5 s' });
  });

  it('says unusable with QEMU’s own error when it dies', async () => {
    const r = await probe(
      await fake(
        'dies',
        'echo "qemu: warning: host lacks pni" >&2; echo "qemu: error: failed to set MSR 0x10a" >&2; exit 1',
      ),
    );
    assert.deepEqual(r, {
      usable: false,
      reason: 'qemu exited 1 under KVM: qemu: error: failed to set MSR 0x10a',
    });
  });
});
