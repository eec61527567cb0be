// Which firmware is asking, from its DHCP options, and what it should be given (pixiecore's
// split: a pure classifier, then one policy). iPXE identifies itself with user class "iPXE"
// (option 77); PXE ROMs give their architecture in option 93 (0 = BIOS, 6/7/9 = UEFI).

export type Firmware = 'ipxe' | 'bios-pxe' | 'uefi-pxe' | 'plain';

/** Client architectures (DHCP option 93) taken as UEFI (→ ipxe.efi); dnsmasq's config says the same. */
export const uefiArches: readonly number[] = [6, 7, 9, 10, 11];

export interface ClientHints {
  /** Option 77, decoded as text. */
  userClass?: string | null;
  /** Option 93, client system architecture. */
  arch?: number | null;
  /** Option 60, vendor class identifier. */
  vendorClass?: string | null;
}

export function classify(h: ClientHints): Firmware {
  if (h.userClass && /ipxe/i.test(h.userClass)) return 'ipxe';
  const pxe = h.vendorClass?.startsWith('PXEClient') ?? false;
  if (h.arch !== undefined && h.arch !== null) {
    if (h.arch === 0) return 'bios-pxe';
    if (uefiArches.includes(h.arch)) return 'uefi-pxe';
  }
  return pxe ? 'bios-pxe' : 'plain';
}

export interface BootSpec {
  /** What goes in the BOOTP file field and option 67. */
  bootFile: string | null;
  /** next-server (siaddr) for TFTP, when the boot file is fetched over TFTP. */
  nextServer: string | null;
}

/** The one policy: iPXE gets its script over HTTP, PXE ROMs get iPXE over TFTP, others nothing. */
export function bootSpec(firmware: Firmware, serviceIp: string, httpPort: number, mac: string): BootSpec {
  switch (firmware) {
    case 'ipxe': {
      const port = httpPort === 80 ? '' : `:${httpPort}`;
      return { bootFile: `http://${serviceIp}${port}/boot/${mac}.ipxe`, nextServer: null };
    }
    case 'bios-pxe':
      return { bootFile: 'undionly.kpxe', nextServer: serviceIp };
    case 'uefi-pxe':
      return { bootFile: 'ipxe.efi', nextServer: serviceIp };
    default:
      return { bootFile: null, nextServer: null };
  }
}
