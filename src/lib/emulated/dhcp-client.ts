// The DHCP client side of emulated VMs: one UDP socket on port 68 shared by every VM of the
// process, replies dispatched by xid and chaddr; DISCOVER then REQUEST with bounded retries and
// exponential backoff. Every request carries user class "iPXE" (option 77) so the service node
// answers with the HTTP URL of the VM's boot script, as it does a real iPXE.
import { randomInt } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { intToIp, ipToInt, octetsOf } from '../net/ipv4.js';

const MAGIC_COOKIE = 0x63825363;
const IPXE_USER_CLASS = [4, ...Buffer.from('iPXE')];

export interface DhcpOffer {
  type: number;
  xid: number;
  mac: string;
  yiaddr: string;
  serverId: string | null;
  bootFile: string | null;
}

function macBytes(mac: string): Buffer {
  return Buffer.from(mac.replace(/:/g, ''), 'hex');
}

/** A BOOTREQUEST with options as [code, bytes] pairs. */
export function encodeRequest(xid: number, mac: string, options: [number, number[]][]): Buffer {
  const head = Buffer.alloc(240);
  head[0] = 1;
  head[1] = 1;
  head[2] = 6;
  head.writeUInt32BE(xid >>> 0, 4);
  head.writeUInt16BE(0x8000, 10); // broadcast flag: we have no address yet
  macBytes(mac).copy(head, 28);
  head.writeUInt32BE(MAGIC_COOKIE, 236);
  const opts: number[] = [];
  for (const [code, bytes] of options) opts.push(code, bytes.length, ...bytes);
  opts.push(255);
  const out = Buffer.concat([head, Buffer.from(opts)]);
  return out.length >= 300 ? out : Buffer.concat([out, Buffer.alloc(300 - out.length)]);
}

export function discoverPacket(xid: number, mac: string): Buffer {
  return encodeRequest(xid, mac, [
    [53, [1]],
    [55, [1, 3, 6, 12, 15, 28, 66, 67, 175]],
    [61, [1, ...macBytes(mac)]],
    [77, IPXE_USER_CLASS],
  ]);
}

export function requestPacket(xid: number, mac: string, ip: string, serverId: string): Buffer {
  return encodeRequest(xid, mac, [
    [53, [3]],
    [50, octetsOf(ipToInt(ip))],
    [54, octetsOf(ipToInt(serverId))],
    [55, [1, 3, 6, 12, 15, 28, 66, 67, 175]],
    [61, [1, ...macBytes(mac)]],
    [77, IPXE_USER_CLASS],
  ]);
}

const cstring = (b: Buffer) => {
  const end = b.indexOf(0);
  return b.subarray(0, end < 0 ? b.length : end).toString('latin1');
};
const ipAt = (b: Buffer, i: number) => intToIp(b.readUInt32BE(i));

/** A BOOTREPLY's fields a client needs; null when it is not one. */
export function decodeReply(buf: Buffer): DhcpOffer | null {
  if (buf.length < 240 || buf[0] !== 2 || buf.readUInt32BE(236) !== MAGIC_COOKIE) return null;
  const mac = buf
    .subarray(28, 34)
    .toString('hex')
    .replace(/(..)(?!$)/g, '$1:');
  let type = 0;
  let serverId: string | null = null;
  let bootFile: string | null = null;
  let i = 240;
  while (i < buf.length) {
    const code = buf[i];
    if (code === 255) break;
    if (code === 0) {
      i++;
      continue;
    }
    if (i + 1 >= buf.length) break;
    const len = buf[i + 1];
    const v = buf.subarray(i + 2, i + 2 + len);
    if (v.length < len) break;
    if (code === 53 && len === 1) type = v[0];
    else if (code === 54 && len === 4) serverId = ipAt(v, 0);
    else if (code === 67) bootFile = cstring(v);
    i += 2 + len;
  }
  const file = cstring(buf.subarray(108, 236));
  return {
    type,
    xid: buf.readUInt32BE(4),
    mac,
    yiaddr: ipAt(buf, 16),
    serverId,
    bootFile: bootFile || file || null,
  };
}

export interface DhcpClientOptions {
  /** Where requests go: 255.255.255.255 (needs a route) or the service node's address. */
  to?: string;
  port?: number;
  /** First retransmission timeout; doubles each try. */
  timeoutMs?: number;
  tries?: number;
}

export interface Lease {
  ip: string;
  serverId: string;
  bootFile: string | null;
  tries: number;
}

/** The shared socket and the per-xid waiters. */
export class DhcpClient {
  private readonly waiters = new Map<
    number,
    { mac: string; want: number; resolve: (o: DhcpOffer) => void; cancel: () => void }
  >();
  private closed = false;
  private constructor(
    private readonly sock: Socket,
    private readonly opts: Required<DhcpClientOptions>,
  ) {
    sock.on('message', (msg) => {
      const r = decodeReply(msg);
      if (!r) return;
      const w = this.waiters.get(r.xid);
      if (!w || w.mac !== r.mac || (r.type !== w.want && r.type !== 6)) return;
      this.waiters.delete(r.xid);
      w.resolve(r);
    });
  }

  static async open(opts: DhcpClientOptions = {}): Promise<DhcpClient> {
    const sock = createSocket({ type: 'udp4', reuseAddr: true });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(68, '0.0.0.0', () => {
        sock.off('error', reject);
        sock.setBroadcast(true);
        try {
          // hundreds of VMs share this socket: the default buffers overflow in a power-on burst
          sock.setSendBufferSize(4 << 20);
          sock.setRecvBufferSize(4 << 20);
        } catch {}
        resolve();
      });
    });
    sock.on('error', () => {});
    return new DhcpClient(sock, {
      to: opts.to ?? '255.255.255.255',
      port: opts.port ?? 67,
      timeoutMs: opts.timeoutMs ?? 1000,
      tries: opts.tries ?? 4,
    });
  }

  /** Sends `packet` until a reply of type `want` (or a NAK) for `xid` comes, or tries run out. */
  private async exchange(
    xid: number,
    mac: string,
    want: number,
    packet: Buffer,
  ): Promise<{ reply: DhcpOffer; tries: number } | null> {
    let timeout = this.opts.timeoutMs;
    for (let t = 1; t <= this.opts.tries && !this.closed; t++) {
      const reply = await new Promise<DhcpOffer | null>((resolve) => {
        const timer = setTimeout(() => {
          this.waiters.delete(xid);
          resolve(null);
        }, timeout);
        this.waiters.set(xid, {
          mac,
          want,
          resolve: (o) => {
            clearTimeout(timer);
            resolve(o);
          },
          cancel: () => {
            clearTimeout(timer);
            resolve(null);
          },
        });
        const send = (again: number) =>
          this.sock.send(packet, this.opts.port, this.opts.to, (err) => {
            // a full send queue is local congestion, not a lost packet: send again shortly
            if (err && again > 0 && !this.closed) setTimeout(() => send(again - 1), 5 + randomInt(20));
          });
        send(3);
      });
      if (reply) return { reply, tries: t };
      // backoff with jitter, as RFC 2131 asks (±1 s there; a quarter of the timeout here)
      timeout = timeout * 2 + randomInt(Math.max(1, Math.floor(timeout / 4)));
    }
    return null;
  }

  /** DISCOVER → OFFER → REQUEST → ACK for one MAC; throws with the reason when it fails. */
  async lease(mac: string): Promise<Lease> {
    const xid = randomInt(1, 0x7fffffff);
    const offer = await this.exchange(xid, mac, 2, discoverPacket(xid, mac));
    if (!offer) throw new Error(`no DHCP offer after ${this.opts.tries} tries`);
    if (offer.reply.type !== 2) throw new Error(`DHCP answered DISCOVER with type ${offer.reply.type}`);
    const serverId = offer.reply.serverId;
    if (!serverId) throw new Error('DHCP offer without a server id');
    const xid2 = randomInt(1, 0x7fffffff);
    const ack = await this.exchange(xid2, mac, 5, requestPacket(xid2, mac, offer.reply.yiaddr, serverId));
    if (!ack) throw new Error(`no DHCP ACK after ${this.opts.tries} tries`);
    if (ack.reply.type !== 5) throw new Error(`DHCP NAK for ${offer.reply.yiaddr}`);
    return {
      ip: ack.reply.yiaddr,
      serverId,
      bootFile: ack.reply.bootFile,
      tries: offer.tries + ack.tries,
    };
  }

  close(): void {
    this.closed = true;
    for (const w of this.waiters.values()) w.cancel();
    this.waiters.clear();
    this.sock.close();
  }
}
