// A seeded fuzzer for the service node's UDP protocols: malformed DHCP, TFTP and DNS datagrams
// made by mutating valid ones (bit flips, truncations, extensions, length lies, wrong op codes,
// traversal names, compression loops...). The same seed and targets give the same packets, byte for
// byte, so a failure is replayed with KB_FUZZ_SEED=<seed>. Written apart from src/ so it cannot share a
// mistake with the parsers it attacks (DHCP frames come from the tests' own wire codec).
import { type BuildOpts, buildPacket, type OptionValue } from '../lib/services/dhcp/wire.js';

/** mulberry32: small, fast, and the same sequence on every platform. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

export type Proto = 'dhcp' | 'tftp' | 'dns';

export interface FuzzPacket {
  proto: Proto;
  bytes: Buffer;
  /** Which generator made it, for the report. */
  kind: string;
}

// ---------------------------------------------------------------- generic mutations

export function flipBits(rng: Rng, b: Buffer, from = 0): Buffer {
  const out = Buffer.from(b);
  const n = 1 + rng.int(8);
  for (let i = 0; i < n && out.length > from; i++) {
    const at = from + rng.int(out.length - from);
    out[at] ^= 1 << rng.int(8);
  }
  return out;
}

const truncate = (rng: Rng, b: Buffer) => b.subarray(0, rng.int(b.length));
const extend = (rng: Rng, b: Buffer, max = 600) => Buffer.concat([b, rng.bytes(1 + rng.int(max))]);

// ---------------------------------------------------------------- DHCP

const ip = (s: string) => s.split('.').map(Number);
const macBytes = (mac: string) => Buffer.from(mac.replace(/:/g, ''), 'hex');

type Opt = [number, OptionValue];

/** A PXE ROM's parameter request list (EDK2/Intel style), as long as they send. */
const PXE_PARAMS = [1, 2, 3, 4, 5, 6, 11, 12, 13, 15, 16, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54];
PXE_PARAMS.push(58, 59, 60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135);

export interface DhcpTarget {
  /** Planned MACs: a reply may go to these only. */
  known: string[];
  /** MACs the service node must never answer. */
  unknown: string[];
  /** The service node's address (option 54 of a REQUEST that chose it). */
  server: string;
  /** Addresses for ciaddr/giaddr/option 50: planned ones, others in the subnet, and foreign ones. */
  addresses: string[];
}

/** A valid client message of one of the shapes firmware and OSes send. */
function dhcpBase(rng: Rng, t: DhcpTarget, xid: number): { kind: string; bytes: Buffer } {
  const mac = rng.chance(0.5) ? rng.pick(t.known) : rng.pick(t.unknown);
  const flags = rng.chance(0.5) ? 0x8000 : 0;
  const uuid = [0, ...rng.bytes(16)];
  const arch = rng.pick([0, 6, 7, 9, 10, 11, 16, 0xffff]);
  const shapes: [string, () => Opt[], Partial<BuildOpts>?][] = [
    [
      'discover',
      () => [
        [53, [1]],
        [55, [1, 3, 6, 12, 15, 28]],
        [61, [1, ...macBytes(mac)]],
      ],
    ],
    [
      'pxe-discover',
      () => [
        [53, [1]],
        [57, [4, 236]],
        [55, PXE_PARAMS],
        [97, uuid],
        [93, [arch >> 8, arch & 0xff]],
        [94, [1, 2, 1]],
        [60, `PXEClient:Arch:${String(arch).padStart(5, '0')}:UNDI:002001`],
      ],
    ],
    [
      'ipxe-discover',
      () => [
        [53, [1]],
        [57, [5, 192]],
        [77, [4, ...Buffer.from('iPXE')]],
        [175, [177, 5, 1, 0x10, 0xec, 0x81, 0x39, 19, 1, 1]],
        [
          55,
          [1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 119, 128, 129, 130, 131, 132, 133, 134, 135, 175, 203],
        ],
        [61, [1, ...macBytes(mac)]],
      ],
    ],
    [
      'request',
      () => [
        [53, [3]],
        [50, ip(rng.pick(t.addresses))],
        [54, ip(rng.chance(0.8) ? t.server : rng.pick(t.addresses))],
        [55, [1, 3, 6]],
      ],
    ],
    ['renew', () => [[53, [3]]], { ciaddr: rng.pick(t.addresses) }],
    ['inform', () => [[53, [8]]], { ciaddr: rng.pick(t.addresses) }],
    [
      'release',
      () => [
        [53, [7]],
        [54, ip(t.server)],
      ],
      { ciaddr: rng.pick(t.addresses) },
    ],
    [
      'decline',
      () => [
        [53, [4]],
        [50, ip(rng.pick(t.addresses))],
      ],
    ],
    ['bootp', () => []],
    [
      'relayed',
      () => [
        [53, [1]],
        [82, [1, 4, 0, 0, 0, 1]],
      ],
      { giaddr: rng.pick(t.addresses) },
    ],
  ];
  const [kind, opts, extra] = rng.pick(shapes);
  return { kind, bytes: buildPacket({ xid, mac, flags, options: opts(), ...extra }) };
}

const dhcpMutations: [string, (rng: Rng, b: Buffer, t: DhcpTarget) => Buffer][] = [
  ['bit-flips', (rng, b) => flipBits(rng, b, rng.chance(0.5) ? 240 : 0)],
  ['truncated', truncate],
  ['extended', (rng, b) => extend(rng, b)],
  [
    'option-length-lie',
    (rng, b) => {
      const out = Buffer.from(b);
      // The first option's length byte, or any byte after the cookie taken as one.
      const at = rng.chance(0.5) ? 241 : 240 + rng.int(Math.max(1, out.length - 240));
      if (at < out.length) out[at] = rng.pick([0, 1, 2, 3, 4, 5, 127, 200, 255]);
      return out;
    },
  ],
  [
    'no-end-option',
    (rng, b) => {
      const end = b.lastIndexOf(255);
      return end > 240 ? Buffer.concat([b.subarray(0, end), rng.bytes(rng.int(4))]) : b;
    },
  ],
  ['pads', (rng, b) => Buffer.concat([b.subarray(0, 240), Buffer.alloc(1 + rng.int(300)), b.subarray(240)])],
  [
    'odd-options',
    (rng, b) => {
      // Zero-length and wrong-typed values for options with a fixed size, and every code once.
      const opts: Buffer[] = [];
      for (let i = 0; i < 1 + rng.int(40); i++) {
        const code = rng.chance(0.3)
          ? rng.pick([1, 3, 20, 50, 51, 52, 53, 54, 57, 61, 93, 97])
          : rng.int(256);
        const len = rng.chance(0.2) ? 0 : rng.int(20);
        opts.push(Buffer.from([code, len]), rng.bytes(len));
      }
      return Buffer.concat([b.subarray(0, 240), ...opts, Buffer.from([255])]);
    },
  ],
  [
    'message-type',
    (rng, b) =>
      Buffer.concat([
        b.subarray(0, 240),
        Buffer.from([53, 1, rng.pick([0, 2, 5, 6, 9, 18, 255])]),
        b.subarray(243),
      ]),
  ],
  [
    'op-code',
    (rng, b) => {
      const out = Buffer.from(b);
      out[0] = rng.pick([0, 2, 3, 255]);
      return out;
    },
  ],
  [
    'hardware',
    (rng, b) => {
      const out = Buffer.from(b);
      if (rng.chance(0.5)) out[1] = rng.pick([0, 6, 32, 255]);
      else out[2] = rng.pick([0, 1, 5, 7, 16, 255]);
      return out;
    },
  ],
  [
    'addresses',
    (rng, b, t) => {
      const out = Buffer.from(b);
      const any = () => (rng.chance(0.5) ? rng.bytes(4) : Buffer.from(ip(rng.pick(t.addresses))));
      any().copy(out, rng.pick([12, 16, 20, 24]));
      return out;
    },
  ],
  [
    'overload',
    (rng, b) =>
      Buffer.concat([
        b.subarray(0, 240),
        Buffer.from([52, 1, rng.pick([0, 1, 2, 3, 4, 255])]),
        b.subarray(240),
      ]),
  ],
  ['bad-cookie', (rng, b) => Buffer.concat([b.subarray(0, 236), rng.bytes(4), b.subarray(240)])],
  [
    'oversized',
    (rng, b) => Buffer.concat([b, Buffer.alloc(Math.max(0, rng.pick([1200, 1500, 8000, 65000]) - b.length))]),
  ],
  ['random', (rng) => rng.bytes(rng.pick([1, 2, 4, 100, 236, 239, 240, 241, 300, 548, 1500]))],
];

export function dhcpPacket(rng: Rng, t: DhcpTarget, xid: number): FuzzPacket {
  const base = dhcpBase(rng, t, xid);
  let bytes = base.bytes;
  const names: string[] = [];
  for (let i = 0, n = 1 + rng.int(2); i < n; i++) {
    const [name, mutate] = rng.pick(dhcpMutations);
    names.push(name);
    bytes = mutate(rng, bytes, t);
  }
  return { proto: 'dhcp', bytes, kind: `${base.kind}/${names.join('+')}` };
}

// ---------------------------------------------------------------- TFTP

export interface TftpTarget {
  /** Names served from the root. */
  inRoot: string[];
  /** Names of things outside the root: traversal, absolute paths, symlinks leading out. */
  outside: string[];
}

const tftpOp = (op: number) => Buffer.from([op >> 8, op & 0xff]);
const z = (s: string | Buffer) => Buffer.concat([Buffer.from(s as string, 'latin1'), Buffer.from([0])]);

export function rrq(name: string, mode = 'octet', opts: [string, string][] = [], op = 1): Buffer {
  return Buffer.concat([tftpOp(op), z(name), z(mode), ...opts.flatMap(([k, v]) => [z(k), z(v)])]);
}

const absurd = [
  '0',
  '1',
  '7',
  '8',
  '-1',
  '512',
  '65464',
  '65465',
  '99999999999999999999',
  'x',
  '',
  '1e9',
  '0x10',
];

export function tftpPacket(rng: Rng, t: TftpTarget): FuzzPacket {
  const name = () =>
    rng.pick([
      () => rng.pick(t.inRoot),
      () => rng.pick(t.outside),
      () => 'a/'.repeat(rng.int(400)) + 'x',
      () => 'A'.repeat(rng.pick([255, 256, 511, 1000, 1400, 8000])),
      () =>
        rng
          .bytes(1 + rng.int(64))
          .toString('latin1')
          .replace(/\0/g, '.'),
      () => '',
    ])();
  const gens: [string, () => Buffer][] = [
    ['rrq', () => rrq(name(), rng.pick(['octet', 'netascii', 'OCTET', 'mail']))],
    ['rrq-bad-mode', () => rrq(name(), rng.pick(['', 'binary', 'x'.repeat(300), '\u00ff']))],
    [
      'rrq-options',
      () => {
        const opts: [string, string][] = [];
        for (const k of ['blksize', 'windowsize', 'tsize', 'timeout', 'BLKSIZE', 'multicast', 'rollover']) {
          if (rng.chance(0.5)) opts.push([k, rng.pick(absurd)]);
        }
        if (rng.chance(0.2)) opts.push(['blksize', rng.pick(absurd)]); // a duplicate
        if (rng.chance(0.2)) opts.push(['dangling', '']);
        return rrq(rng.pick(t.inRoot), 'octet', opts);
      },
    ],
    [
      'rrq-no-nul',
      () => {
        const full = rrq(name(), 'octet', rng.chance(0.5) ? [['blksize', '1468']] : []);
        return full.subarray(0, full.length - 1 - rng.int(Math.min(full.length - 2, 12)));
      },
    ],
    ['wrq', () => rrq(name(), 'octet', [], 2)],
    [
      'opcode-garbage',
      () => Buffer.concat([tftpOp(rng.int(10)), rng.bytes(rng.pick([0, 1, 2, 3, 10, 512, 516, 1500]))]),
    ],
    ['opcode-wild', () => Buffer.concat([tftpOp(rng.int(65536)), rng.bytes(rng.int(40))])],
    ['runt', () => rng.bytes(rng.int(4))],
    [
      'bit-flips',
      () =>
        flipBits(
          rng,
          rrq(rng.pick(t.inRoot), 'octet', [
            ['blksize', '1468'],
            ['tsize', '0'],
          ]),
        ),
    ],
    ['oversized', () => rrq('x'.repeat(rng.pick([9000, 30000, 65000])))],
  ];
  const [kind, gen] = rng.pick(gens);
  return { proto: 'tftp', bytes: gen(), kind };
}

/** What a client may throw back at a transfer that answered it (counted in the same budget). */
export function tftpTransferGarbage(rng: Rng): Buffer {
  return rng.pick([
    () => rng.bytes(rng.int(4)),
    () => Buffer.concat([tftpOp(4), Buffer.from([rng.int(256), rng.int(256)])]), // ACK, any block
    () => Buffer.concat([tftpOp(4), rng.bytes(rng.int(6))]),
    () => Buffer.concat([tftpOp(5), Buffer.from([0, rng.int(9)]), rng.bytes(rng.int(20))]), // ERROR, no NUL
    () => Buffer.concat([tftpOp(3), Buffer.from([0, 1]), rng.bytes(rng.int(600))]), // DATA to a reader
    () => Buffer.concat([tftpOp(rng.int(10)), rng.bytes(rng.int(30))]),
  ])();
}

// ---------------------------------------------------------------- DNS

export function dnsName(name: string): Buffer {
  const parts = name.split('.').filter(Boolean);
  return Buffer.concat([
    ...parts.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])),
    Buffer.from([0]),
  ]);
}

export function dnsQuery(
  id: number,
  name: string,
  type = 1,
  opts: { flags?: number; edns?: boolean } = {},
): Buffer {
  const head = Buffer.alloc(12);
  head.writeUInt16BE(id, 0);
  head.writeUInt16BE(opts.flags ?? 0x0100, 2); // RD
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(opts.edns ? 1 : 0, 10);
  const q = Buffer.alloc(4);
  q.writeUInt16BE(type, 0);
  q.writeUInt16BE(1, 2);
  const parts = [head, dnsName(name), q];
  if (opts.edns) parts.push(Buffer.from([0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]));
  return Buffer.concat(parts);
}

export function dnsPacket(rng: Rng, names: string[], id: number): FuzzPacket {
  const good = () =>
    dnsQuery(id, rng.pick(names), rng.pick([1, 12, 28, 6, 2, 255, 252, 0, 65535]), { edns: rng.chance(0.3) });
  const withHeader = (qd: number, an: number, ns: number, ar: number, body: Buffer) => {
    const h = Buffer.alloc(12);
    h.writeUInt16BE(id, 0);
    h.writeUInt16BE(0x0100, 2);
    h.writeUInt16BE(qd, 4);
    h.writeUInt16BE(an, 6);
    h.writeUInt16BE(ns, 8);
    h.writeUInt16BE(ar, 10);
    return Buffer.concat([h, body]);
  };
  const tail = Buffer.from([0, 1, 0, 1]);
  const gens: [string, () => Buffer][] = [
    ['bit-flips', () => flipBits(rng, good())],
    [
      'truncated-question',
      () => {
        const g = good();
        return g.subarray(0, 12 + rng.int(g.length - 12));
      },
    ],
    ['extended', () => extend(rng, good(), 300)],
    // A pointer to itself, two pointing at each other, one past the end, one forward.
    ['compression-self', () => withHeader(1, 0, 0, 0, Buffer.concat([Buffer.from([0xc0, 12]), tail]))],
    [
      'compression-pair',
      () => withHeader(1, 0, 0, 0, Buffer.concat([Buffer.from([1, 97, 0xc0, 14, 0xc0, 12]), tail])),
    ],
    [
      'compression-out',
      () => withHeader(1, 0, 0, 0, Buffer.concat([Buffer.from([0xc0 | rng.int(64), rng.int(256)]), tail])),
    ],
    [
      'compression-chain',
      () => {
        // The question's name points forward to the last of 200 pointers, each to the one before:
        // deep, not a loop, and past the end of the question.
        const start = 12 + 2 + 4;
        const chain: number[] = [0];
        for (let k = 1; k <= 200; k++) {
          const to = k === 1 ? start : start + 1 + 2 * (k - 2);
          chain.push(0xc0 | (to >> 8), to & 0xff);
        }
        const last = start + 1 + 2 * 199;
        return withHeader(
          1,
          0,
          0,
          0,
          Buffer.concat([Buffer.from([0xc0 | (last >> 8), last & 0xff]), tail, Buffer.from(chain)]),
        );
      },
    ],
    [
      'label-too-long',
      () =>
        withHeader(
          1,
          0,
          0,
          0,
          Buffer.concat([Buffer.from([63 + rng.int(3)]), Buffer.alloc(70, 97), Buffer.from([0]), tail]),
        ),
    ],
    [
      'name-too-long',
      () =>
        withHeader(
          1,
          0,
          0,
          0,
          Buffer.concat([
            ...Array.from({ length: 60 }, () => Buffer.from([5, 97, 98, 99, 100, 101])),
            Buffer.from([0]),
            tail,
          ]),
        ),
    ],
    [
      'label-types',
      () =>
        withHeader(1, 0, 0, 0, Buffer.concat([Buffer.from([rng.pick([0x40, 0x80, 0x41]), 1, 2, 0]), tail])),
    ],
    [
      'bad-counts',
      () => {
        const b = good();
        b.writeUInt16BE(rng.pick([0, 2, 255, 65535]), 4);
        if (rng.chance(0.5)) b.writeUInt16BE(rng.int(65536), 4 + 2 * (1 + rng.int(3)));
        return b;
      },
    ],
    ['header-only', () => good().subarray(0, rng.int(13))],
    [
      'flags',
      () => {
        const b = good();
        b.writeUInt16BE(rng.int(65536), 2); // QR, opcode, rcode, Z all at random
        return b;
      },
    ],
    [
      'bad-opt',
      () =>
        withHeader(
          1,
          0,
          0,
          1,
          Buffer.concat([
            dnsName(rng.pick(names)),
            tail,
            Buffer.from([0, 0, 41, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff]),
            rng.bytes(rng.int(20)),
          ]),
        ),
    ],
    ['random', () => rng.bytes(rng.pick([1, 12, 17, 64, 512, 1500]))],
    ['oversized', () => Buffer.concat([good(), Buffer.alloc(rng.pick([4096, 20000, 65000]))])],
  ];
  const [kind, gen] = rng.pick(gens);
  return { proto: 'dns', bytes: gen(), kind };
}

// ---------------------------------------------------------------- the campaign

export interface CampaignTargets {
  dhcp: DhcpTarget;
  tftp: TftpTarget;
  /** Names to query: in the zone, outside it, odd ones. */
  dnsNames: string[];
}

/**
 * `count` packets, interleaved across the three protocols (DHCP 40%, TFTP 30%, DNS 30%). Every
 * DHCP packet starts with its own xid, and every DNS one its own id, so answers can be matched.
 */
export function campaign(seed: number, count: number, t: CampaignTargets): FuzzPacket[] {
  const rng = new Rng(seed);
  const out: FuzzPacket[] = [];
  for (let i = 0; i < count; i++) {
    const r = rng.next();
    if (r < 0.4) out.push(dhcpPacket(rng, t.dhcp, (0x5a000000 + i) >>> 0));
    else if (r < 0.7) out.push(tftpPacket(rng, t.tftp));
    else out.push(dnsPacket(rng, t.dnsNames, i & 0xffff));
  }
  return out;
}
