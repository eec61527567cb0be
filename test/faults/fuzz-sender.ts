// Sends a seeded fuzz campaign at a service node and reports what came back, then checks the
// node still serves a valid DHCP DISCOVER, DNS query and TFTP read. Runs where a client of the
// service node would (the client namespace, or the service node's own loopback):
//   ip netns exec NS node --import tsx test/faults/fuzz-sender.ts < job.json
// Binds UDP 67 and 68 to see every DHCP reply (broadcast, unicast to ciaddr, or to a relay).
// Prints one JSON line: a SenderReport.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { buildPacket } from '../lib/services/dhcp/wire.js';
import { type CampaignTargets, campaign, dnsQuery, Rng, rrq, tftpTransferGarbage } from './fuzz.js';

export interface SenderJob {
  seed: number;
  count: number;
  ratePerSec: number;
  server: { host: string; dhcpPort: number; tftpPort: number; dnsPort: number };
  targets: CampaignTargets;
  /** Each known MAC's planned address: an OFFER or ACK may carry that one only (or 0.0.0.0). */
  planned: Record<string, string>;
  /** Files served from the TFTP root: every DATA payload must come from one of them. */
  rootFiles: string[];
  /** Bytes that must never be sent (content of files outside the root). */
  markers: string[];
  /** After the fuzz: what a valid client asks and must get. */
  check: { mac: string; ip: string; dnsName: string; dnsIp: string; tftpFile: string; tftpPath: string };
  /** The builtin daemon's events endpoint, read at the end. */
  events?: { url: string; secret: string };
}

export interface SenderReport {
  sent: { dhcp: number; tftp: number; dns: number; tftpTransfer: number; sendErrors: number };
  kinds: Record<string, number>;
  durationMs: number;
  dhcp: {
    replies: number;
    /** Replies whose chaddr is not planned, or not the chaddr of the request with that xid. */
    foreign: { xid: number; chaddr: string; type: number | null }[];
    /** Replies giving a planned MAC another address than its own (or than the one it sent). */
    wrongAddress: { xid: number; chaddr: string; yiaddr: string }[];
    /** Fuzz packets whose final chaddr was a known MAC, and of those, how many got a reply. */
    toKnown: number;
    toUnknown: number;
  };
  tftp: { data: number; oack: number; error: number; leaked: { from: string; why: string }[] };
  dns: { replies: number; toResponses: number[]; strays: number };
  after: { offer: string | null; dns: string | null; tftp: string; tftpWaitMs: number };
  events?: { total: number; byType: Record<string, number>; ignoredMaxPerKey: number; ignoredKeys: number };
}

const MAX_UDP = 65507;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const macOf = (b: Buffer) => [...b.subarray(28, 34)].map((x) => x.toString(16).padStart(2, '0')).join(':');

function dhcpType(b: Buffer): number | null {
  let i = 240;
  while (i + 1 < b.length && b[i] !== 255) {
    if (b[i] === 0) {
      i++;
      continue;
    }
    if (b[i] === 53) return b[i + 2] ?? null;
    i += 2 + b[i + 1];
  }
  return null;
}

/** The first A record's address in a DNS answer, or null. */
function firstA(b: Buffer): string | null {
  if (b.length < 12 || b.readUInt16BE(6) === 0) return null;
  const skipName = (i: number) => {
    while (i < b.length) {
      const l = b[i];
      if (l === 0) return i + 1;
      if ((l & 0xc0) === 0xc0) return i + 2;
      i += 1 + l;
    }
    return i;
  };
  let i = skipName(12) + 4;
  for (let n = b.readUInt16BE(6); n > 0 && i < b.length; n--) {
    i = skipName(i);
    const type = b.readUInt16BE(i);
    const len = b.readUInt16BE(i + 8);
    if (type === 1 && len === 4) return [...b.subarray(i + 10, i + 14)].join('.');
    i += 10 + len;
  }
  return null;
}

async function bound(port: number): Promise<Socket> {
  const s = createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(port, '0.0.0.0', () => {
      s.off('error', reject);
      resolve();
    });
  });
  s.on('error', () => {});
  s.setBroadcast(true);
  return s;
}

export async function runSender(job: SenderJob): Promise<SenderReport> {
  const t0 = Date.now();
  const { host } = job.server;
  const packets = campaign(job.seed, job.count, job.targets);
  const known = new Set(job.targets.dhcp.known);
  const files = job.rootFiles.map((f) => readFileSync(f));
  const markers = job.markers.map((m) => Buffer.from(m));
  const report: SenderReport = {
    sent: { dhcp: 0, tftp: 0, dns: 0, tftpTransfer: 0, sendErrors: 0 },
    kinds: {},
    durationMs: 0,
    dhcp: { replies: 0, foreign: [], wrongAddress: [], toKnown: 0, toUnknown: 0 },
    tftp: { data: 0, oack: 0, error: 0, leaked: [] },
    dns: { replies: 0, toResponses: [], strays: 0 },
    after: { offer: null, dns: null, tftp: 'not tried', tftpWaitMs: 0 },
  };

  // DHCP: what went out under each xid (chaddr of the final bytes), and every reply seen.
  const sentChaddr = new Map<number, Set<string>>();
  const sentYiaddr = new Map<number, Set<string>>();
  const offers = new Map<number, Buffer>();
  const dhcp68 = await bound(68);
  const dhcp67 = await bound(67);
  const onDhcp = (b: Buffer) => {
    if (b.length < 240 || b[0] !== 2) return;
    report.dhcp.replies++;
    const xid = b.readUInt32BE(4);
    const chaddr = macOf(b);
    offers.set(xid, b);
    if (!known.has(chaddr) || !sentChaddr.get(xid)?.has(chaddr)) {
      report.dhcp.foreign.push({ xid, chaddr, type: dhcpType(b) });
    }
    // dnsmasq answers an INFORM in the request's own buffer: a yiaddr the client sent comes back.
    const yiaddr = [...b.subarray(16, 20)].join('.');
    if (yiaddr !== '0.0.0.0' && yiaddr !== job.planned[chaddr] && !sentYiaddr.get(xid)?.has(yiaddr)) {
      report.dhcp.wrongAddress.push({ xid, chaddr, yiaddr });
    }
  };
  dhcp68.on('message', onDhcp);
  dhcp67.on('message', onDhcp);

  // TFTP: one socket sends every request; transfers answer it from their own ports.
  const reactRng = new Rng(job.seed ^ 0x7f7f7f7f);
  const reactBudget = Math.floor(job.count * 0.05);
  const tftp = await bound(0);
  tftp.on('message', (b: Buffer, from: RemoteInfo) => {
    const where = `${from.address}:${from.port}`;
    for (const m of markers) {
      if (b.includes(m)) report.tftp.leaked.push({ from: where, why: `carries "${m}"` });
    }
    const op = b.length >= 2 ? b.readUInt16BE(0) : -1;
    if (op === 3) {
      report.tftp.data++;
      const payload = b.subarray(4);
      if (payload.length > 0 && !files.some((f) => f.includes(payload))) {
        report.tftp.leaked.push({
          from: where,
          why: `block ${b.readUInt16BE(2)}: ${payload.length} bytes from no file in the root: ${JSON.stringify(payload.subarray(0, 40).toString('latin1'))}`,
        });
      }
    } else if (op === 6) report.tftp.oack++;
    else if (op === 5) report.tftp.error++;
    // Throw something back at a transfer now and then: runts, stray ACKs, DATA to a reader.
    if ((op === 3 || op === 6) && report.sent.tftpTransfer < reactBudget && reactRng.chance(0.3)) {
      report.sent.tftpTransfer++;
      tftp.send(tftpTransferGarbage(reactRng), from.port, from.address);
    }
  });

  // DNS: ids of the queries that were responses themselves (QR set): those must get no answer.
  const dnsSent = new Map<number, boolean[]>();
  const dns = await bound(0);
  const dnsAnswers = new Map<number, Buffer>();
  dns.on('message', (b: Buffer) => {
    if (b.length < 2) return;
    report.dns.replies++;
    const id = b.readUInt16BE(0);
    dnsAnswers.set(id, b);
    const qrs = dnsSent.get(id);
    if (!qrs) report.dns.strays++;
    else if (qrs.every(Boolean)) report.dns.toResponses.push(id);
  });

  const send = (sock: Socket, b: Buffer, port: number) =>
    sock.send(b.length > MAX_UDP ? b.subarray(0, MAX_UDP) : b, port, host, (err) => {
      if (err) report.sent.sendErrors++;
    });

  // Paced: as many as the rate allows for the time elapsed, in small bursts.
  const start = Date.now();
  let i = 0;
  while (i < packets.length) {
    const due = Math.min(packets.length, Math.ceil(((Date.now() - start) / 1000) * job.ratePerSec) + 1);
    for (let burst = 0; i < due && burst < 200; i++, burst++) {
      const p = packets[i];
      report.kinds[`${p.proto}:${p.kind.split('/')[0]}`] =
        (report.kinds[`${p.proto}:${p.kind.split('/')[0]}`] ?? 0) + 1;
      if (p.proto === 'dhcp') {
        if (p.bytes.length >= 34) {
          const xid = p.bytes.readUInt32BE(4);
          const chaddr = macOf(p.bytes);
          if (!sentChaddr.has(xid)) sentChaddr.set(xid, new Set());
          sentChaddr.get(xid)!.add(chaddr);
          if (!sentYiaddr.has(xid)) sentYiaddr.set(xid, new Set());
          sentYiaddr.get(xid)!.add([...p.bytes.subarray(16, 20)].join('.'));
          if (known.has(chaddr)) report.dhcp.toKnown++;
          else report.dhcp.toUnknown++;
        }
        report.sent.dhcp++;
        send(dhcp68, p.bytes, job.server.dhcpPort);
      } else if (p.proto === 'tftp') {
        report.sent.tftp++;
        send(tftp, p.bytes, job.server.tftpPort);
      } else {
        if (p.bytes.length >= 2) {
          const id = p.bytes.readUInt16BE(0);
          const qr = p.bytes.length >= 3 && (p.bytes[2] & 0x80) !== 0;
          dnsSent.set(id, [...(dnsSent.get(id) ?? []), qr]);
        }
        report.sent.dns++;
        send(dns, p.bytes, job.server.dnsPort);
      }
    }
    await sleep(5);
  }
  // Late answers (and the transfers' first resends) still count.
  await sleep(1500);

  // A valid client after the storm: DISCOVER (broadcast flag) -> OFFER with the planned address.
  const xid = 0x7e000001;
  const discover = buildPacket({
    xid,
    mac: job.check.mac,
    flags: 0x8000,
    options: [
      [53, [1]],
      [55, [1, 3, 6, 12, 15, 28]],
    ],
  });
  sentChaddr.set(xid, new Set([job.check.mac]));
  for (let attempt = 0; attempt < 5 && !offers.has(xid); attempt++) {
    send(dhcp68, discover, job.server.dhcpPort);
    for (let t = 0; t < 1000 && !offers.has(xid); t += 20) await sleep(20);
  }
  const offer = offers.get(xid);
  report.after.offer = offer && dhcpType(offer) === 2 ? [...offer.subarray(16, 20)].join('.') : null;

  // A valid DNS query -> its A record.
  const qid = 0x7e01;
  dnsSent.set(qid, [false]);
  for (let attempt = 0; attempt < 5 && !dnsAnswers.has(qid); attempt++) {
    send(dns, dnsQuery(qid, job.check.dnsName), job.server.dnsPort);
    for (let t = 0; t < 1000 && !dnsAnswers.has(qid); t += 20) await sleep(20);
  }
  report.after.dns = dnsAnswers.has(qid) ? firstA(dnsAnswers.get(qid)!) : null;

  const tftpStart = Date.now();
  report.after.tftp = await tftpGet(
    host,
    job.server.tftpPort,
    job.check.tftpFile,
    readFileSync(job.check.tftpPath),
  );
  report.after.tftpWaitMs = Date.now() - tftpStart;

  for (const s of [dhcp68, dhcp67, tftp, dns]) s.close();

  if (job.events) {
    const res = await fetch(job.events.url, { headers: { authorization: `Bearer ${job.events.secret}` } });
    const events = (await res.text())
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { type: string; mac: string | null; detail?: string });
    const byType: Record<string, number> = {};
    const perKey = new Map<string, number>();
    for (const e of events) {
      byType[e.type] = (byType[e.type] ?? 0) + 1;
      if (e.type === 'dhcp.ignored') {
        const k = `${e.mac} ${e.detail}`;
        perKey.set(k, (perKey.get(k) ?? 0) + 1);
      }
    }
    report.events = {
      total: events.length,
      byType,
      ignoredMaxPerKey: Math.max(0, ...perKey.values()),
      ignoredKeys: perKey.size,
    };
  }
  report.durationMs = Date.now() - t0;
  return report;
}

/**
 * A plain RFC 1350 read (512-byte blocks, lockstep): 'ok' when the bytes match, else why not. It
 * asks for up to 40 s: a server that caps its transfers (dnsmasq: 50) takes new ones only once the
 * fuzz's abandoned ones have timed out.
 */
async function tftpGet(host: string, port: number, name: string, want: Buffer): Promise<string> {
  const sock = await bound(0);
  try {
    return await new Promise<string>((resolve) => {
      const blocks: Buffer[] = [];
      let tries = 0;
      const ask = () => {
        if (++tries > 27) return resolve(`no answer to RRQ ${name} after ${tries - 1} tries`);
        sock.send(rrq(name), port, host);
        timer = setTimeout(ask, 1500);
      };
      let timer: NodeJS.Timeout;
      sock.on('message', (b: Buffer, from: RemoteInfo) => {
        const op = b.readUInt16BE(0);
        if (op === 5) {
          clearTimeout(timer);
          return resolve(
            `error ${b.readUInt16BE(2)}: ${b.subarray(4).toString('latin1').replace(/\0.*/, '')}`,
          );
        }
        if (op !== 3) return;
        clearTimeout(timer);
        const block = b.readUInt16BE(2);
        if (block === blocks.length + 1) blocks.push(b.subarray(4));
        const ack = Buffer.from([0, 4, block >> 8, block & 0xff]);
        sock.send(ack, from.port, from.address);
        if (block === blocks.length && b.length - 4 < 512) {
          const got = Buffer.concat(blocks);
          return resolve(got.equals(want) ? 'ok' : `got ${got.length} bytes, not the file's ${want.length}`);
        }
        timer = setTimeout(() => resolve(`transfer of ${name} stalled at block ${blocks.length}`), 3000);
      });
      ask();
    });
  } finally {
    sock.close();
  }
}

if (process.argv[1]?.endsWith('fuzz-sender.ts')) {
  const input = readFileSync(0, 'utf8');
  const report = await runSender(JSON.parse(input) as SenderJob);
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(0);
}
