// Address pools for a site's VMs: consecutive addresses from the site's /22 blocks, skipping the
// first address of every block (common Grid'5000 tools do) and the site network's own
// network, gateway and broadcast addresses.
import { containsAddress, lastAddress, octetsOf, type Prefix } from '../net/ipv4.js';

export function usableAddresses(blocks: Prefix[], site: Prefix, gateway: number): number[] {
  const reserved = new Set([site.base, gateway, lastAddress(site)]);
  const out: number[] = [];
  for (const block of blocks) {
    for (let a = block.base + 1; a <= lastAddress(block); a++) {
      if (!reserved.has(a) && containsAddress(site, a)) out.push(a);
    }
  }
  return out;
}

export function countUsable(blocks: Prefix[], site: Prefix, gateway: number): number {
  let n = 0;
  for (const block of blocks) {
    n += lastAddress(block) - block.base;
    for (const r of [site.base, gateway, lastAddress(site)]) {
      if (r > block.base && r <= lastAddress(block)) n--;
    }
  }
  return n;
}

/** Grid'5000 convention: 00:16:3e followed by the last three bytes of the VM's IPv4 address. */
export function macForIp(ip: number): string {
  return ['00', '16', '3e', ...octetsOf(ip).slice(1)]
    .map((b) => (typeof b === 'string' ? b : b.toString(16).padStart(2, '0')))
    .join(':');
}
