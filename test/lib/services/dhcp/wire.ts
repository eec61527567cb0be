// A DHCP wire codec for the tests, written apart from the code under test so the two cannot
// share a mistake: builds client requests byte by byte and prints any packet as text.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { root } from '../../../helpers/cli.js';

export type OptionValue = number[] | string | Buffer;

export interface BuildOpts {
  op?: number;
  xid: number;
  mac: string;
  flags?: number;
  ciaddr?: string;
  giaddr?: string;
  htype?: number;
  hlen?: number;
  /** In order; codes may repeat and pads (code 0) pass through as given. */
  options: [number, OptionValue][];
  /** Leave out the end option. */
  noEnd?: boolean;
}

const ipBytes = (ip: string) => ip.split('.').map(Number);

export function buildPacket(o: BuildOpts): Buffer {
  const head = Buffer.alloc(240);
  head[0] = o.op ?? 1;
  head[1] = o.htype ?? 1;
  head[2] = o.hlen ?? 6;
  head.writeUInt32BE(o.xid >>> 0, 4);
  head.writeUInt16BE(o.flags ?? 0, 10);
  Buffer.from(ipBytes(o.ciaddr ?? '0.0.0.0')).copy(head, 12);
  Buffer.from(ipBytes(o.giaddr ?? '0.0.0.0')).copy(head, 24);
  Buffer.from(o.mac.replace(/[:-]/g, ''), 'hex').copy(head, 28);
  head.writeUInt32BE(0x63825363, 236);
  const opts: Buffer[] = [];
  for (const [code, value] of o.options) {
    if (code === 0) {
      opts.push(Buffer.from([0]));
      continue;
    }
    const data = typeof value === 'string' ? Buffer.from(value, 'latin1') : Buffer.from(value);
    opts.push(Buffer.from([code, data.length]), data);
  }
  if (!o.noEnd) opts.push(Buffer.from([255]));
  const out = Buffer.concat([head, ...opts]);
  return out.length >= 300 ? out : Buffer.concat([out, Buffer.alloc(300 - out.length)]);
}

export interface Parsed {
  op: number;
  xid: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  mac: string;
  sname: string;
  file: string;
  options: Map<number, Buffer>;
}

const ipAt = (b: Buffer, i: number) => [...b.subarray(i, i + 4)].join('.');
const cstr = (b: Buffer) => b.toString('latin1').replace(/\0.*$/s, '');

export function parsePacket(b: Buffer): Parsed {
  const options = new Map<number, Buffer>();
  let i = 240;
  while (i < b.length && b[i] !== 255) {
    if (b[i] === 0) {
      i++;
      continue;
    }
    const len = b[i + 1];
    options.set(b[i], b.subarray(i + 2, i + 2 + len));
    i += 2 + len;
  }
  return {
    op: b[0],
    xid: b.readUInt32BE(4),
    flags: b.readUInt16BE(10),
    ciaddr: ipAt(b, 12),
    yiaddr: ipAt(b, 16),
    siaddr: ipAt(b, 20),
    giaddr: ipAt(b, 24),
    mac: [...b.subarray(28, 34)].map((x) => x.toString(16).padStart(2, '0')).join(':'),
    sname: cstr(b.subarray(44, 108)),
    file: cstr(b.subarray(108, 236)),
    options,
  };
}

const types = ['', 'DISCOVER', 'OFFER', 'REQUEST', 'DECLINE', 'ACK', 'NAK', 'RELEASE', 'INFORM'];
const ipOpts = new Set([1, 3, 6, 28, 50, 54]);
const textOpts = new Set([12, 15, 56, 60, 66, 67, 77]);

function optionText(code: number, v: Buffer): string {
  if (code === 53) return types[v[0]] ?? String(v[0]);
  if (ipOpts.has(code))
    return (v.toString('hex').match(/.{8}/g) ?? []).map((h) => ipAt(Buffer.from(h, 'hex'), 0)).join(' ');
  if (textOpts.has(code)) return JSON.stringify(v.toString('latin1'));
  if (code === 51 || code === 58 || code === 59) return String(v.readUInt32BE(0));
  if (code === 55) return [...v].join(',');
  if (code === 57 || code === 93) return String(v.readUInt16BE(0));
  return v.toString('hex');
}

/** pixiecore-style text of a packet: header fields, then one option per line in wire order. */
export function describePacket(b: Buffer): string {
  const p = parsePacket(b);
  const lines = [
    `op ${p.op === 1 ? 'BOOTREQUEST' : p.op === 2 ? 'BOOTREPLY' : p.op}`,
    `xid 0x${p.xid.toString(16).padStart(8, '0')}`,
    `flags 0x${p.flags.toString(16).padStart(4, '0')}`,
    `ciaddr ${p.ciaddr}`,
    `yiaddr ${p.yiaddr}`,
    `siaddr ${p.siaddr}`,
    `giaddr ${p.giaddr}`,
    `chaddr ${p.mac}`,
    `sname ${JSON.stringify(p.sname)}`,
    `file ${JSON.stringify(p.file)}`,
  ];
  for (const [code, v] of p.options) lines.push(`option ${code} ${optionText(code, v)}`);
  return `${lines.join('\n')}\n`;
}

export const fixtureDir = join(root, 'test/fixtures/dhcp');

export function readHexFixture(name: string): Buffer {
  return Buffer.from(readFileSync(join(fixtureDir, `${name}.hex`), 'utf8').replace(/\s+/g, ''), 'hex');
}

export function readTextFixture(name: string): string {
  return readFileSync(join(fixtureDir, `${name}.txt`), 'utf8');
}
