// The DHCP packet layer: the `dhcp` package parses and formats the BOOTP frame; this module
// guards it (its option walker mis-steps on pad bytes and on option lengths that do not match
// the type it expects, and logs every option it does not know), registers the PXE options it
// lacks, and decodes those into typed fields.
import { createRequire } from 'node:module';
import { normalizeMac } from '../backend.js';
import type { ClientHints } from '../classifier.js';

interface PackageOption {
  name: string;
  type?: string;
  config?: string;
  attr?: string;
}

interface PackageFrame {
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  chaddr: string;
  sname: string;
  file: string;
  options: Record<number, unknown>;
}

interface SeqBuffer {
  _data: Buffer;
  _w: number;
}

const require = createRequire(import.meta.url);
const dhcp = require('dhcp') as { addOption(code: number, opt: PackageOption): void };
const protocol = require('dhcp/lib/protocol.js') as {
  parse(buf: Buffer): PackageFrame & { magicCookie: number };
  format(frame: PackageFrame): SeqBuffer;
};
const registry = (require('dhcp/lib/options.js') as { opts: Record<number, PackageOption> }).opts;

export const MessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;

export const messageNames: Record<number, string> = Object.fromEntries(
  Object.entries(MessageType).map(([k, v]) => [v, k]),
);

const MAGIC_COOKIE = 0x63825363;
const HEADER = 240;
/** RFC 951's minimum BOOTP message; some PXE ROMs drop shorter replies. */
const MIN_REPLY = 300;

// PXE options the package does not know, kept as raw bytes and decoded below. 93 is raw too: the
// package's UInt16s reader would run past a 1-byte option and shift every following one; 61 too,
// as the package reads it as 7-bit ASCII and it is echoed back verbatim (RFC 6842).
const rawOptions: [number, string, string][] = [
  [61, 'Client-Identifier', 'clientId'],
  [77, 'User Class', 'userClass'],
  [93, 'Client System Architecture', 'clientArch'],
  [94, 'Client Network Interface Identifier', 'clientNdi'],
  [97, 'Client Machine Identifier', 'clientUuid'],
];
for (const [code, name, attr] of rawOptions) dhcp.addOption(code, { name, type: 'UInt8s', attr });
// RFC 2132 flags carry one byte; the package reads them as zero-length Bool and would mis-step.
for (const code of [20, 34, 36, 39]) dhcp.addOption(code, { ...registry[code], type: 'UInt8' });
// Every other code as raw bytes, so the package neither logs nor skips what it does not know.
for (let code = 1; code < 255; code++) {
  if (!registry[code])
    dhcp.addOption(code, { name: `Option ${code}`, type: 'UInt8s', attr: `option${code}` });
}

const fixedSize: Record<string, number> = {
  UInt8: 1,
  Int8: 1,
  UInt16: 2,
  Int16: 2,
  UInt32: 4,
  Int32: 4,
  IP: 4,
  Bool: 0,
};
const unitSize: Record<string, number> = { IPs: 4, UInt16s: 2 };

export class MalformedPacket extends Error {
  constructor(
    message: string,
    /** The client's MAC when the frame got far enough to have one. */
    readonly mac: string | null = null,
  ) {
    super(message);
  }
}

/**
 * The frame with its options rewritten without pad bytes and ending at the end option, after
 * checking every option fits and has a length its type allows: the only shape of options the
 * package parses correctly.
 */
export function canonicalFrame(buf: Buffer): Buffer {
  if (buf.length < HEADER) throw new MalformedPacket(`too short (${buf.length} bytes)`);
  const mac = buf[1] === 1 && buf[2] === 6 ? normalizeMac(buf.subarray(28, 34).toString('hex')) : null;
  if (buf.readUInt32BE(236) !== MAGIC_COOKIE) throw new MalformedPacket('no DHCP magic cookie', mac);
  const parts: Buffer[] = [buf.subarray(0, HEADER)];
  let i = HEADER;
  for (;;) {
    if (i >= buf.length) break; // a missing end option is common enough to tolerate
    const code = buf[i];
    if (code === 255) break;
    if (code === 0) {
      i++;
      continue;
    }
    if (i + 1 >= buf.length || i + 2 + buf[i + 1] > buf.length) {
      throw new MalformedPacket(`option ${code} runs past the end of the packet`, mac);
    }
    const len = buf[i + 1];
    const type = registry[code]?.type ?? '';
    const fixed = fixedSize[type];
    const unit = unitSize[type];
    if ((fixed !== undefined && len !== fixed) || (unit !== undefined && (len === 0 || len % unit !== 0))) {
      throw new MalformedPacket(`option ${code} has length ${len}`, mac);
    }
    parts.push(buf.subarray(i, i + 2 + len));
    i += 2 + len;
  }
  parts.push(Buffer.from([255]));
  return Buffer.concat(parts);
}

/** Option 77: RFC 3004 length-prefixed class names (iPXE: 04 "iPXE"), or one bare string. */
export function decodeUserClass(bytes: readonly number[] | null | undefined): string | null {
  if (!bytes || bytes.length === 0) return null;
  const names: string[] = [];
  let i = 0;
  while (i < bytes.length) {
    const len = bytes[i];
    if (len === 0 || i + 1 + len > bytes.length) break;
    names.push(Buffer.from(bytes.slice(i + 1, i + 1 + len)).toString('latin1'));
    i += 1 + len;
  }
  if (i === bytes.length) return names.join(',');
  return Buffer.from(bytes).toString('latin1').replace(/\0+$/, '');
}

/** Option 93: the first 16-bit architecture type (0 BIOS, 7/9 x86-64 UEFI, ...). */
export function decodeArch(bytes: readonly number[] | null | undefined): number | null {
  if (!bytes || bytes.length < 2) return null;
  return (bytes[0] << 8) | bytes[1];
}

/** Option 94: type 1 (UNDI) with major and minor version, e.g. "UNDI 2.1". */
export function decodeNdi(bytes: readonly number[] | null | undefined): string | null {
  if (bytes?.length !== 3) return null;
  return `${bytes[0] === 1 ? 'UNDI' : `type ${bytes[0]}`} ${bytes[1]}.${bytes[2]}`;
}

/** Option 97: type 0 then a 16-byte UUID, shown in the usual 8-4-4-4-12 grouping. */
export function decodeUuid(bytes: readonly number[] | null | undefined): string | null {
  if (bytes?.length !== 17 || bytes[0] !== 0) return null;
  const hex = Buffer.from(bytes.slice(1)).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export interface DhcpRequest {
  /** Option 53; null for a plain BOOTP request. */
  type: number | null;
  xid: number;
  flags: number;
  ciaddr: string;
  giaddr: string;
  /** chaddr, colon lower-case. */
  mac: string;
  /** Option 50. */
  requestedIp: string | null;
  /** Option 54. */
  serverId: string | null;
  /** Option 55. */
  paramList: number[];
  hints: ClientHints;
  /** Option 61 as sent, echoed in every reply. */
  clientId: number[] | null;
  /** Option 97 as sent, echoed to PXE clients. */
  uuid: number[] | null;
  /** Option 94, decoded. */
  ndi: string | null;
}

const bytesOf = (v: unknown): number[] | null => (Array.isArray(v) ? (v as number[]) : null);
const stringOf = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);

/** Decodes a client's frame; throws MalformedPacket for anything that is not a usable request. */
export function decodeRequest(buf: Buffer): DhcpRequest {
  const canon = canonicalFrame(buf);
  let frame: PackageFrame;
  try {
    frame = protocol.parse(canon);
  } catch (e) {
    throw new MalformedPacket((e as Error).message);
  }
  const mac = normalizeMac(frame.chaddr);
  if (!mac) throw new MalformedPacket(`bad chaddr ${frame.chaddr}`);
  if (frame.op !== 1) throw new MalformedPacket(`op ${frame.op} is not a BOOTREQUEST`, mac);
  const o = frame.options;
  const type = typeof o[53] === 'number' ? o[53] : null;
  const userClass = bytesOf(o[77]);
  return {
    type,
    xid: frame.xid,
    flags: frame.flags,
    ciaddr: frame.ciaddr,
    giaddr: frame.giaddr,
    mac,
    requestedIp: stringOf(o[50]),
    serverId: stringOf(o[54]),
    paramList: bytesOf(o[55]) ?? [],
    hints: {
      userClass: decodeUserClass(userClass),
      arch: decodeArch(bytesOf(o[93])),
      vendorClass: stringOf(o[60]),
    },
    clientId: bytesOf(o[61]),
    uuid: bytesOf(o[97]),
    ndi: decodeNdi(bytesOf(o[94])),
  };
}

/** Reply options by code, in the value shapes the package formats (IP strings, byte arrays, ...). */
export interface ReplyOptions {
  1?: string;
  3?: string[];
  6?: string[];
  12?: string;
  15?: string;
  28?: string;
  43?: number[];
  51?: number;
  53: number;
  54: string;
  56?: string;
  60?: string;
  61?: number[];
  66?: string;
  67?: string;
  97?: number[];
  175?: number[];
}

export interface DhcpReply {
  xid: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  /** next-server */
  siaddr: string;
  giaddr: string;
  mac: string;
  /** BOOTP file field: what PXE ROMs load (they do not all read option 67). */
  file: string;
  options: ReplyOptions;
}

export function encodeReply(r: DhcpReply): Buffer {
  const sb = protocol.format({
    op: 2,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: r.xid,
    secs: 0,
    flags: r.flags,
    ciaddr: r.ciaddr,
    yiaddr: r.yiaddr,
    siaddr: r.siaddr,
    giaddr: r.giaddr,
    chaddr: r.mac,
    sname: '',
    file: r.file,
    // The package writes undefined as a value (and throws), so only set options go in.
    options: Object.fromEntries(Object.entries(r.options).filter(([, v]) => v !== undefined)),
  });
  const out = Buffer.alloc(Math.max(MIN_REPLY, sb._w));
  sb._data.copy(out, 0, 0, sb._w);
  return out;
}
