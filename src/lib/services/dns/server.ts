// The service node's DNS role: dns2 sockets (UDP and TCP on one port) around the pure Zone.
// Authoritative answers carry AA; names outside the zone are refused, or relayed byte for byte
// from the first configured upstream when there is one.
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import type dns2 from 'dns2';
import { Packet, TCPServer, UDPServer } from 'dns2';
import type { RoleContext, RunningRole, StartRole } from '../role.js';
import { type Lookup, Zone, type ZoneRecord } from './zone.js';

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const CLASS_IN = 1;
const CLASS_ANY = 255;
/** Zone transfers: renderZone() is how the data leaves, not AXFR/IXFR. */
const NO_TRANSFER = new Set([251, 252]);
const OUR_UDP_PAYLOAD = 1232;

const typeNames = new Map<number, string>(Object.entries(Packet.TYPE).map(([k, v]) => [v as number, k]));
export const typeName = (t: number) => typeNames.get(t) ?? `TYPE${t}`;

type Resource = dns2.Packet.Resource;
/** An OPT pseudo-record (the typings miss EDNS's options argument). */
const opt = () =>
  (Packet.Resource.EDNS as unknown as (rdata: object[], o: object) => Resource)([], {
    udpPayloadSize: OUR_UDP_PAYLOAD,
  });

export interface DnsOptions {
  /** Upstream port (53; tests point it at a fake resolver). */
  upstreamPort?: number;
  /** How long an upstream has to answer before the client gets SERVFAIL. */
  forwardTimeoutMs?: number;
}

/**
 * dns2's Packet.parse loops over the header's record counts, catching a throw per bad record,
 * so 12 bytes claiming 4 x 65535 records held the event loop for seconds. Every question takes
 * at least 5 bytes and every record 11: refuse counts the message cannot hold before looping.
 * Patched on the shared Packet once; a bound every well-formed message meets, queries or answers.
 */
function guardParse() {
  const P = Packet as unknown as { parse(b: Buffer): Packet; __kbGuarded?: boolean };
  if (P.__kbGuarded) return;
  P.__kbGuarded = true;
  const parse = P.parse;
  P.parse = (buf: Buffer) => {
    if (!Buffer.isBuffer(buf) || buf.length < 12) throw new Error('DNS message shorter than its header');
    const qd = buf.readUInt16BE(4);
    const rr = buf.readUInt16BE(6) + buf.readUInt16BE(8) + buf.readUInt16BE(10);
    if (12 + 5 * qd + 11 * rr > buf.length) throw new Error('DNS record counts exceed the message');
    return parse(buf);
  };
}

function toResource(r: ZoneRecord): Resource {
  const base = { name: r.name, ttl: r.ttl, class: CLASS_IN, type: Packet.TYPE[r.type] };
  switch (r.type) {
    case 'A':
      return { ...base, address: r.address } as Resource;
    case 'NS':
      return { ...base, ns: r.ns } as Resource;
    case 'PTR':
      return { ...base, domain: r.domain } as Resource;
    case 'SOA': {
      const { primary, admin, serial, refresh, retry, expiration, minimum } = r;
      return { ...base, primary, admin, serial, refresh, retry, expiration, minimum } as Resource;
    }
  }
}

function hasEdns(p: Packet): boolean {
  return (p.additionals ?? []).some((r) => r?.type === Packet.TYPE.EDNS);
}

function withRcode(p: Packet, rcode: number): Packet {
  p.header.rcode = rcode;
  return p;
}

/** A query for `q` to upstream, over UDP, then over TCP if the UDP answer came back truncated. */
export async function forwardQuery(
  upstream: string,
  port: number,
  q: { name: string; type: number; class: number },
  edns: boolean,
  timeoutMs: number,
): Promise<Buffer> {
  const query = new Packet();
  query.header = new Packet.Header({ id: Packet.uuid(), rd: 1 });
  query.questions = [new Packet.Question(q.name, q.type, q.class)];
  if (edns) {
    query.additionals = [opt()];
  }
  const wire = query.toBuffer();
  const id = query.header.id;
  const deadline = Date.now() + timeoutMs;
  const udp = await new Promise<Buffer>((resolve, reject) => {
    const sock = createSocket('udp4');
    const timer = setTimeout(() => finish(new Error(`upstream ${upstream} did not answer`)), timeoutMs);
    const finish = (err: Error | null, buf?: Buffer) => {
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(buf!);
    };
    sock.on('error', (e) => finish(e));
    sock.on('message', (msg, rinfo) => {
      // Only the upstream's reply to this query: anything else on the port is spoofing or stale.
      if (rinfo.address !== upstream || rinfo.port !== port || msg.length < 12) return;
      if (msg.readUInt16BE(0) !== id || (msg[2] & 0x80) === 0) return;
      finish(null, msg);
    });
    sock.send(wire, port, upstream);
  });
  if ((udp[2] & 0x02) === 0) return udp;
  return new Promise<Buffer>((resolve, reject) => {
    const sock = connect({ host: upstream, port });
    const left = Math.max(100, deadline - Date.now());
    sock.setTimeout(left, () => sock.destroy(new Error(`upstream ${upstream} (tcp) did not answer`)));
    let buf = Buffer.alloc(0);
    sock.on('error', reject);
    sock.on('connect', () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(wire.length);
      sock.write(Buffer.concat([len, wire]));
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        sock.destroy();
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        if (msg.length < 12 || msg.readUInt16BE(0) !== id) reject(new Error('bad upstream answer'));
        else resolve(msg);
      }
    });
    sock.on('end', () => reject(new Error(`upstream ${upstream} closed the connection`)));
  });
}

/** The answer to one query: a Packet from the zone, or the upstream's bytes. Never throws. */
export async function answer(
  zone: Zone,
  forward: string[],
  request: Packet,
  opts: Required<DnsOptions>,
): Promise<Packet | Buffer | null> {
  // A response sent to us (or a reflection attempt): answering could start a loop.
  if (request.header.qr === 1) return null;
  const res = Packet.createResponseFromRequest(request);
  res.header.ra = forward.length > 0 ? 1 : 0;
  if (hasEdns(request)) {
    res.additionals.push(opt());
  }
  if (request.header.opcode !== 0) return withRcode(res, RCODE.NOTIMP);
  if (request.header.qdcount !== 1 || request.questions.length !== 1) {
    res.questions = [];
    return withRcode(res, RCODE.FORMERR);
  }
  const q = request.questions[0];
  if (q.class !== CLASS_IN && q.class !== CLASS_ANY) return withRcode(res, RCODE.REFUSED);
  const found: Lookup = zone.lookup(q.name, typeName(q.type));
  if (found.authoritative) {
    if (NO_TRANSFER.has(q.type)) return withRcode(res, RCODE.REFUSED);
    res.header.aa = 1;
    res.answers = found.answers.map(toResource);
    res.authorities = found.authorities.map(toResource);
    res.additionals = [...found.additionals.map(toResource), ...res.additionals];
    return withRcode(res, RCODE[found.rcode]);
  }
  if (forward.length === 0) return withRcode(res, RCODE.REFUSED);
  try {
    const buf = await forwardQuery(forward[0], opts.upstreamPort, q, hasEdns(request), opts.forwardTimeoutMs);
    const out = Buffer.from(buf);
    out.writeUInt16BE(request.header.id, 0);
    return out;
  } catch {
    return withRcode(res, RCODE.SERVFAIL);
  }
}

export async function startDns(ctx: RoleContext, options: DnsOptions = {}): Promise<RunningRole> {
  const { config, logger } = ctx;
  guardParse();
  const opts: Required<DnsOptions> = { upstreamPort: 53, forwardTimeoutMs: 3000, ...options };
  const zone = Zone.fromConfig(config);
  let forward: string[] = [];
  const onRequest =
    (proto: string) => (request: Packet, send: (r: Packet | Buffer) => unknown, client: unknown) => {
      answer(zone, forward, request, opts)
        .then((reply) => {
          if (reply) return send(reply);
        })
        .catch((e: Error) => {
          // A send to a client that went away, or a record the encoder refused: log, stay up.
          const from = (client as { address?: string; remoteAddress?: string }) ?? {};
          logger.debug(`dns/${proto}: no answer to ${from.address ?? from.remoteAddress}: ${e.message}`);
        });
    };
  const bindBoth = async (want: number) => {
    const udp = new UDPServer({ type: 'udp4' });
    const tcp = new TCPServer();
    udp.on('request', onRequest('udp'));
    tcp.on('request', onRequest('tcp'));
    // Malformed queries surface here (dns2 drops them): logged, never thrown.
    udp.on('requestError', (e: Error) => logger.debug(`dns/udp: malformed query: ${e.message}`));
    tcp.on('requestError', (e: Error) => logger.debug(`dns/tcp: malformed query: ${e.message}`));
    const port = await new Promise<number>((resolve, reject) => {
      udp.once('error', reject);
      // A UDP reply leaves from the address the kernel routes by, not the one the query came to:
      // bound to 0.0.0.0, a query from another subnet would get its answer from eth0's address
      // and be dropped by the client. The service address is the one clients ask.
      udp.bind(want, config.bind === '0.0.0.0' ? config.ip : config.bind, () => {
        udp.off('error', reject);
        resolve(udp.address().port);
      });
    });
    try {
      // TCP on the port UDP got: with port 0, whatever the kernel picked for UDP.
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(port, config.bind, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      udp.close();
      throw e;
    }
    return { udp, tcp, port };
  };
  let bound: Awaited<ReturnType<typeof bindBoth>> | undefined;
  // A free UDP port can be taken on TCP: with port 0, try a few kernel picks.
  for (let attempt = 0; !bound; attempt++) {
    try {
      bound = await bindBoth(config.ports.dns);
    } catch (e) {
      if (config.ports.dns !== 0 || attempt >= 4) throw e;
    }
  }
  const { udp, tcp, port } = bound;
  const [first] = config.dns.forward;
  if (first && (first === config.ip || first === config.bind) && opts.upstreamPort === port) {
    // Forwarding to ourselves would relay each query to itself until the timeouts pile up.
    logger.warn(`dns: forwarder ${first} is this server; refusing outside names instead`);
  } else {
    forward = config.dns.forward;
  }
  udp.on('error', (e: Error) => logger.warn(`dns/udp: ${e.message}`));
  tcp.on('error', (e: Error) => logger.warn(`dns/tcp: ${e.message}`));
  let closing: Promise<void> | undefined;
  const tcpClients = new Set<Socket>();
  tcp.on('connection', (s) => {
    tcpClients.add(s);
    s.on('close', () => tcpClients.delete(s));
  });
  return {
    name: 'dns',
    port,
    close: () => {
      closing ??= Promise.all([
        new Promise<void>((resolve) => udp.close(() => resolve())),
        new Promise<void>((resolve) => {
          tcp.close(() => resolve());
          for (const s of tcpClients) s.destroy();
        }),
      ]).then(() => {});
      return closing;
    },
  };
}

export const startDnsServer: StartRole = (ctx) => startDns(ctx);
