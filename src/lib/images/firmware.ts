// Network boot firmware from Debian packages, found at run time: iPXE for PXE clients
// (package ipxe: undionly.kpxe for BIOS, ipxe.efi for UEFI, both served over TFTP) and the
// iPXE option ROMs QEMU's NICs boot from (package ipxe-qemu).
import { access, chmod, copyFile, mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { MissingToolError } from './tools.js';

export interface FirmwareFile {
  /** Name it is served as from the TFTP root (what bootSpec hands out). */
  name: string;
  package: string;
  candidates: string[];
}

/** The TFTP boot files, named as classifier.bootSpec hands them out. */
export const tftpFirmware: readonly FirmwareFile[] = [
  { name: 'undionly.kpxe', package: 'ipxe', candidates: ['/usr/lib/ipxe/undionly.kpxe'] },
  { name: 'ipxe.efi', package: 'ipxe', candidates: ['/usr/lib/ipxe/ipxe.efi'] },
];

/**
 * QEMU's virtio-net boot ROMs. ipxe-qemu ships pxe-virtio.rom (BIOS) and efi-virtio.rom (a
 * combined BIOS + UEFI ROM, what QEMU itself loads by default); the plain ipxe package has a
 * BIOS-only virtio-net.rom as a fallback.
 */
export const virtioRoms = {
  bios: {
    name: 'pxe-virtio.rom',
    package: 'ipxe-qemu',
    candidates: [
      '/usr/lib/ipxe/qemu/pxe-virtio.rom',
      '/usr/share/qemu/pxe-virtio.rom',
      '/usr/lib/ipxe/virtio-net.rom',
    ],
  },
  efi: {
    name: 'efi-virtio.rom',
    package: 'ipxe-qemu',
    candidates: ['/usr/lib/ipxe/qemu/efi-virtio.rom', '/usr/share/qemu/efi-virtio.rom'],
  },
} as const satisfies Record<string, FirmwareFile>;

/** The first existing candidate path, or a one-line error naming the package to install. */
export async function locateFirmware(f: FirmwareFile): Promise<string> {
  for (const c of f.candidates) {
    try {
      await access(c);
      return c;
    } catch {}
  }
  throw new MissingToolError(
    `${f.name} not found (looked in ${f.candidates.join(', ')}): install the Debian package ${f.package}`,
  );
}

export function virtioRom(kind: keyof typeof virtioRoms = 'bios'): Promise<string> {
  return locateFirmware(virtioRoms[kind]);
}

/**
 * The PCI vendor and device IDs in an option ROM's first image (its PCIR structure). SeaBIOS
 * runs a ROM only on a device with the same IDs, and QEMU patches the IDs only into the ROM it
 * picks by default, so a ROM passed with romfile= must match the device as configured.
 */
export async function pciRomIds(path: string): Promise<{ vendor: number; device: number }> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(512);
    await fh.read(head, 0, head.length, 0);
    if (head.readUInt16BE(0) !== 0x55aa) throw new Error('no option ROM signature');
    const pcir = head.readUInt16LE(0x18);
    if (pcir + 8 > head.length || head.toString('latin1', pcir, pcir + 4) !== 'PCIR') {
      throw new Error('no PCIR structure');
    }
    return { vendor: head.readUInt16LE(pcir + 4), device: head.readUInt16LE(pcir + 6) };
  } catch (e) {
    throw new MissingToolError(`${path} is not a PCI option ROM: ${(e as Error).message}`);
  } finally {
    await fh.close();
  }
}

/**
 * Copies undionly.kpxe and ipxe.efi into a TFTP root, world-readable: dnsmasq running as root
 * only serves world-readable files. Returns the paths written.
 */
export async function installTftpFirmware(tftpRoot: string): Promise<string[]> {
  const sources = await Promise.all(tftpFirmware.map((f) => locateFirmware(f)));
  await mkdir(tftpRoot, { recursive: true });
  const out: string[] = [];
  for (const [i, f] of tftpFirmware.entries()) {
    const dest = join(tftpRoot, f.name);
    await copyFile(sources[i], dest);
    await chmod(dest, 0o644);
    out.push(dest);
  }
  return out;
}
