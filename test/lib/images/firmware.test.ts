import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  installTftpFirmware,
  locateFirmware,
  pciRomIds,
  tftpFirmware,
  virtioRom,
} from '../../../src/lib/images/firmware.js';
import { qemuNetbootCommand } from '../../../src/lib/images/qemu.js';
import { MissingToolError } from '../../../src/lib/images/tools.js';

const hasIpxe = existsSync('/usr/lib/ipxe/undionly.kpxe') ? false : 'needs the ipxe package';
const hasIpxeQemu = existsSync('/usr/lib/ipxe/qemu/pxe-virtio.rom') ? false : 'needs the ipxe-qemu package';

describe('boot firmware', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-firmware-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('names the package to install when a file is missing', async () => {
    await assert.rejects(
      locateFirmware({ name: 'undionly.kpxe', package: 'ipxe', candidates: [join(dir, 'nope.kpxe')] }),
      (e: Error) => {
        assert.ok(e instanceof MissingToolError);
        assert.equal(
          e.message,
          `undionly.kpxe not found (looked in ${join(dir, 'nope.kpxe')}): install the Debian package ipxe`,
        );
        return true;
      },
    );
  });

  it('copies undionly.kpxe and ipxe.efi into a TFTP root, world-readable', { skip: hasIpxe }, async () => {
    const root = join(dir, 'tftp');
    const written = await installTftpFirmware(root);
    assert.deepEqual(written, [join(root, 'undionly.kpxe'), join(root, 'ipxe.efi')]);
    for (const f of tftpFirmware) {
      const copy = join(root, f.name);
      assert.ok((await readFile(copy)).equals(await readFile(await locateFirmware(f))), f.name);
      assert.equal((await stat(copy)).mode & 0o777, 0o644);
    }
  });

  it('finds the virtio-net ROM and reads its PCI IDs', { skip: hasIpxeQemu }, async () => {
    const rom = await virtioRom('bios');
    const ids = await pciRomIds(rom);
    assert.equal(ids.vendor, 0x1af4);
    // 0x1000 (transitional) or 0x1041 (modern): the command line follows whichever it is.
    assert.ok([0x1000, 0x1041].includes(ids.device), ids.device.toString(16));
  });

  it('refuses a file that is not an option ROM', async () => {
    const bogus = join(dir, 'bogus.rom');
    await writeFile(bogus, Buffer.alloc(1024, 0x41));
    await assert.rejects(pciRomIds(bogus), /bogus\.rom is not a PCI option ROM: no option ROM signature/);
  });

  it('makes the NIC modern-only when the ROM is for the modern virtio-net device ID', () => {
    const vm = { tap: 'tap0', mac: '52:54:00:00:00:01', romfile: '/r.rom', accel: 'tcg' as const };
    const device = (cmd: string[]) => cmd[cmd.indexOf('-device') + 1];
    assert.equal(
      device(qemuNetbootCommand({ ...vm, romDeviceId: 0x1041 })),
      'virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01,disable-legacy=on,romfile=/r.rom',
    );
    assert.equal(
      device(qemuNetbootCommand({ ...vm, romDeviceId: 0x1000 })),
      'virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01,romfile=/r.rom',
    );
    const cmd = qemuNetbootCommand({ ...vm, romDeviceId: 0x1041 });
    assert.deepEqual(cmd.slice(cmd.indexOf('-netdev'), cmd.indexOf('-netdev') + 2), [
      '-netdev',
      'tap,id=n0,ifname=tap0,script=no,downscript=no',
    ]);
    for (const flag of ['-no-reboot', '-nographic']) assert.ok(cmd.includes(flag), flag);
    assert.deepEqual(cmd.slice(cmd.indexOf('-boot'), cmd.indexOf('-boot') + 2), ['-boot', 'n']);
  });
});
