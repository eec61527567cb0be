// The DHCP role: one UDP socket on 0.0.0.0:67 (a socket bound to the interface address never
// sees a broadcast DISCOVER), the `dhcp` package as the packet layer, and the pure policy. The
// package's own Server is not used: it answers every MAC from a pool, has no NAK logic, leaves
// the BOOTP file field empty and throws from its socket handler on options it cannot fill.
import { createSocket, type RemoteInfo } from 'node:dgram';
import type { RoleContext, RunningRole, StartRole } from '../role.js';
import { type DhcpRequest, decodeRequest, encodeReply, MalformedPacket, MessageType } from './packet.js';
import { type Decision, decide } from './policy.js';

const requestEvents: Record<number, string> = {
  [MessageType.DISCOVER]: 'dhcp.discover',
  [MessageType.REQUEST]: 'dhcp.request',
  [MessageType.INFORM]: 'dhcp.inform',
};

export const startDhcpServer: StartRole = async (ctx: RoleContext): Promise<RunningRole> => {
  const { config, backend, events, logger } = ctx;
  // No reuseAddr: a second DHCP server on this port (a stray dnsmasq) must fail the start, not
  // silently share the requests.
  const sock = createSocket({ type: 'udp4' });

  const send = (d: Extract<Decision, { reply: unknown }>, mac: string) => {
    const bytes = encodeReply(d.reply);
    sock.send(bytes, d.to.port, d.to.address, (err) => {
      if (!err) return;
      logger.warn(`dhcp: ${d.kind} to ${mac} via ${d.to.address}:${d.to.port} failed: ${err.message}`);
      events.emitEvent({ type: 'dhcp.error', mac, detail: `send ${d.kind}: ${err.message}` });
    });
  };

  const handle = (buf: Buffer, from: RemoteInfo) => {
    let req: DhcpRequest;
    try {
      req = decodeRequest(buf);
    } catch (e) {
      const mac = e instanceof MalformedPacket ? e.mac : null;
      const why = (e as Error).message;
      logger.debug(`dhcp: malformed packet from ${from.address}:${from.port}: ${why}`);
      events.emitEvent({ type: 'dhcp.error', mac, detail: `malformed packet: ${why}` });
      return;
    }
    const node = backend.getByMac(req.mac);
    const d = decide(req, node, config);
    const mac = req.mac;
    if (node && req.type !== null && requestEvents[req.type]) {
      const asked = req.requestedIp ?? (req.ciaddr !== '0.0.0.0' ? req.ciaddr : undefined);
      events.emitEvent({ type: requestEvents[req.type], mac, ip: asked, detail: d.firmware });
    }
    switch (d.kind) {
      case 'ignored':
        logger.debug(`dhcp: ignored ${mac}: ${d.detail}`);
        events.emitEvent({ type: 'dhcp.ignored', mac, detail: d.detail });
        return;
      case 'release':
      case 'decline':
        if (d.kind === 'decline') logger.warn(`dhcp: ${mac} ${d.detail}`);
        events.emitEvent({ type: `dhcp.${d.kind}`, mac, ip: d.ip ?? undefined, detail: d.detail });
        return;
      default:
        logger.debug(`dhcp: ${d.kind} ${d.ip ?? ''} to ${mac} (${d.detail}) via ${d.to.address}`);
        send(d, mac);
        events.emitEvent({ type: `dhcp.${d.kind}`, mac, ip: d.ip ?? undefined, detail: d.detail });
    }
  };

  sock.on('message', (buf, from) => {
    try {
      handle(buf, from);
    } catch (e) {
      // A bug here must cost one answer, never the daemon.
      logger.warn(`dhcp: handling a packet from ${from.address} failed: ${(e as Error).stack ?? e}`);
      events.emitEvent({ type: 'dhcp.error', mac: null, detail: `internal: ${(e as Error).message}` });
    }
  });

  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(config.ports.dhcp, config.bind, () => {
      sock.off('error', reject);
      resolve();
    });
  });
  sock.on('error', (e) => logger.warn(`dhcp: socket error: ${e.message}`));
  sock.setBroadcast(true);
  try {
    // A cluster powering on at once sends its DISCOVERs in one burst; the kernel caps this at
    // net.core.rmem_max, which is fine.
    sock.setRecvBufferSize(4 << 20);
    // and the offers go out in a burst too: the default send buffer drops some (ENOBUFS)
    sock.setSendBufferSize(4 << 20);
  } catch {}

  let closed = false;
  return {
    name: 'dhcp',
    port: sock.address().port,
    close: () =>
      new Promise<void>((resolve) => {
        if (closed) return resolve();
        closed = true;
        sock.close(() => resolve());
      }),
  };
};
