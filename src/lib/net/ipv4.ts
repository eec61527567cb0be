// IPv4 prefixes as integers: parsing goes through ipaddr.js, arithmetic stays on plain numbers
// so address pools of thousands of VMs are cheap to carve and compare.
import ipaddr from 'ipaddr.js';

export interface Prefix {
  /** Network address as an unsigned 32-bit integer. */
  base: number;
  length: number;
}

export class PrefixError extends Error {}

export function ipToInt(ip: string): number {
  if (!ipaddr.IPv4.isValidFourPartDecimal(ip)) throw new PrefixError(`"${ip}" is not an IPv4 address`);
  const b = ipaddr.IPv4.parse(ip).octets;
  return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
}

/** The four bytes of an address, most significant first. */
export function octetsOf(n: number): [number, number, number, number] {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
}

/** Dotted form; no array in between: the emulated DHCP client formats addresses of every reply. */
export function intToIp(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function parsePrefix(text: string): Prefix {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(text.trim());
  if (!m) throw new PrefixError(`"${text}" is not an IPv4 prefix such as 10.213.0.0/16`);
  const length = Number(m[2]);
  if (length > 32) throw new PrefixError(`"${text}" has a prefix length over 32`);
  const base = ipToInt(m[1]);
  if ((base & ~maskOf(length)) >>> 0 !== 0) {
    throw new PrefixError(
      `"${text}" has host bits set (network address is ${intToIp(networkOf(base, length))})`,
    );
  }
  return { base, length };
}

/** The prefix of the given length that holds an address: (10.0.0.5, 24) → 10.0.0.0/24. */
export function prefixContaining(addr: number, length: number): Prefix {
  if (!Number.isInteger(length) || length < 0 || length > 32)
    throw new PrefixError(`/${length} is not an IPv4 prefix length`);
  return { base: networkOf(addr, length), length };
}

/**
 * The network an interface address such as 10.0.0.5/24 is on (10.0.0.0/24): unlike
 * parsePrefix, host bits are allowed and cleared; a bare address is its own /32.
 */
export function networkOfAddress(text: string): Prefix {
  const m = /^([^/]+)(?:\/(\d{1,2}))?$/.exec(text.trim());
  if (!m) throw new PrefixError(`"${text}" is not an IPv4 address with a prefix length such as 10.0.0.5/24`);
  return prefixContaining(ipToInt(m[1]), m[2] === undefined ? 32 : Number(m[2]));
}

function maskOf(length: number): number {
  return length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
}

function networkOf(addr: number, length: number): number {
  return (addr & maskOf(length)) >>> 0;
}

export function prefixSize(p: Prefix): number {
  return 2 ** (32 - p.length);
}

export function formatPrefix(p: Prefix): string {
  return `${intToIp(p.base)}/${p.length}`;
}

export function netmask(length: number): string {
  return intToIp(maskOf(length));
}

export function lastAddress(p: Prefix): number {
  return p.base + prefixSize(p) - 1;
}

export function containsAddress(p: Prefix, addr: number): boolean {
  return addr >= p.base && addr <= lastAddress(p);
}

export function containsPrefix(outer: Prefix, inner: Prefix): boolean {
  return inner.length >= outer.length && containsAddress(outer, inner.base);
}

export function overlaps(a: Prefix, b: Prefix): boolean {
  return a.base <= lastAddress(b) && b.base <= lastAddress(a);
}

/** Splits a prefix into consecutive sub-prefixes of the given length. */
export function subdivide(p: Prefix, length: number): Prefix[] {
  if (length < p.length)
    throw new PrefixError(`cannot split ${formatPrefix(p)} into larger /${length} blocks`);
  const step = 2 ** (32 - length);
  const out: Prefix[] = [];
  for (let base = p.base; base <= lastAddress(p); base += step) out.push({ base, length });
  return out;
}

/** The broadcast address of a prefix given as text. */
export function broadcastOf(prefix: string): string {
  return intToIp(lastAddress(parsePrefix(prefix)));
}
