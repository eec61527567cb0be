// What the server answers, as a pure function of the request, the planned node and the config:
// static leases only (the plan fixes every address), so there is no pool and no lease state,
// and RFC 2131's client states are told apart by which of options 50/54 and ciaddr are set.
import { containsAddress, intToIp, ipToInt, lastAddress, netmask, networkOfAddress } from '../../net/ipv4.js';
import { bootSpec, classify, type Firmware } from '../classifier.js';
import type { NodeRecord, ServiceNodeConfig } from '../config.js';
import { type DhcpReply, type DhcpRequest, MessageType, messageNames, type ReplyOptions } from './packet.js';

export type PolicyConfig = Pick<
  ServiceNodeConfig,
  'ip' | 'domain' | 'leaseSeconds' | 'broadcast' | 'network'
> & {
  ports: Pick<ServiceNodeConfig['ports'], 'http'>;
};

export const CLIENT_PORT = 68;
export const SERVER_PORT = 67;
const ANY = '0.0.0.0';
const BROADCAST_FLAG = 0x8000;
/** PXE vendor option 43: discovery control (6) = 8, "just load the boot file", as pixiecore does. */
const PXE_USE_BOOT_FILE = [6, 1, 8, 255];
/** iPXE option 175.176 no-pxedhcp = 1: request at once instead of waiting 2 s for ProxyDHCP offers. */
const IPXE_NO_PROXYDHCP = [176, 1, 1];

export interface Destination {
  address: string;
  port: number;
}

export type Decision =
  | {
      kind: 'offer' | 'ack' | 'nak';
      reply: DhcpReply;
      to: Destination;
      firmware: Firmware;
      /** The address the event is about: the offered one, or the one refused. */
      ip: string | null;
      detail: string;
    }
  | { kind: 'ignored'; firmware: Firmware; detail: string }
  | { kind: 'release' | 'decline'; firmware: Firmware; ip: string | null; detail: string };

/** Netmask and broadcast address of a CIDR subnet such as 10.0.0.0/24. */
export function subnetInfo(cidr: string): { netmask: string; broadcast: string } {
  const network = networkOfAddress(cidr);
  return { netmask: netmask(network.length), broadcast: intToIp(lastAddress(network)) };
}

/**
 * Where a reply goes (RFC 2131 4.1): to the relay if one forwarded the request, unicast to a
 * client that already has its address, else to the subnet's broadcast address: a UDP socket
 * cannot unicast to an address the client has not configured yet, and 255.255.255.255 needs a
 * default route a service node namespace does not have.
 */
export function destination(req: DhcpRequest, type: number, broadcast: string): Destination {
  if (req.giaddr !== ANY) return { address: req.giaddr, port: SERVER_PORT };
  if (type !== MessageType.NAK && req.ciaddr !== ANY) return { address: req.ciaddr, port: CLIENT_PORT };
  return { address: broadcast, port: CLIENT_PORT };
}

export function decide(req: DhcpRequest, node: NodeRecord | null, config: PolicyConfig): Decision {
  const firmware = classify(req.hints);
  if (!node) return { kind: 'ignored', firmware, detail: `unknown MAC (${typeName(req.type)})` };
  // Replies go to giaddr, or unicast to ciaddr: both must be where the plan puts the node, or a
  // misrouted (or forged) request would have us send to any address. A relay's giaddr is its
  // address on the client's subnet.
  if (req.giaddr !== ANY && !containsAddress(networkOfAddress(config.network.subnet), ipToInt(req.giaddr))) {
    return {
      kind: 'ignored',
      firmware,
      detail: `relayed by ${req.giaddr}, outside the node's subnet ${config.network.subnet}`,
    };
  }
  // A REQUEST from a stale address still gets its NAK, broadcast (not to ciaddr): it sends the
  // client back to DISCOVER at once instead of when its old lease runs out.
  if (req.ciaddr !== ANY && req.ciaddr !== node.ip && req.type !== MessageType.REQUEST) {
    return {
      kind: 'ignored',
      firmware,
      detail: `ciaddr ${req.ciaddr}, planned ${node.ip} (${typeName(req.type)})`,
    };
  }
  const { netmask, broadcast: computed } = subnetInfo(config.network.subnet);
  const broadcast = config.broadcast ?? computed;

  const reply = (type: number, yiaddr: string): DhcpReply => {
    const spec = bootSpec(firmware, config.ip, config.ports.http, node.mac);
    const options: ReplyOptions = {
      53: type,
      54: config.ip,
      1: netmask,
      3: [config.network.gateway],
      6: config.network.dns,
      12: node.hostname,
      15: config.domain,
      28: broadcast,
    };
    // RFC 2131: no lease time in the answer to an INFORM, which takes no address.
    if (type !== MessageType.ACK || yiaddr !== ANY) options[51] = config.leaseSeconds;
    if (spec.bootFile) options[67] = spec.bootFile;
    if (spec.nextServer) options[66] = spec.nextServer;
    // Only real PXE ROMs are told "PXEClient": iPXE takes that as a ProxyDHCP offer and would
    // first ask port 4011, which nothing here answers.
    if (firmware === 'bios-pxe' || firmware === 'uefi-pxe') {
      options[60] = 'PXEClient';
      options[43] = PXE_USE_BOOT_FILE;
      if (req.uuid) options[97] = req.uuid;
    }
    if (firmware === 'ipxe') options[175] = IPXE_NO_PROXYDHCP;
    if (req.clientId) options[61] = req.clientId;
    return {
      xid: req.xid,
      flags: req.flags,
      ciaddr: req.ciaddr,
      yiaddr,
      siaddr: spec.nextServer ?? ANY,
      giaddr: req.giaddr,
      mac: req.mac,
      file: spec.bootFile ?? '',
      options,
    };
  };
  const answer = (kind: 'offer' | 'ack', type: number, yiaddr: string): Decision => ({
    kind,
    reply: reply(type, yiaddr),
    to: destination(req, type, broadcast),
    firmware,
    ip: yiaddr === ANY ? req.ciaddr : yiaddr,
    detail: firmware,
  });

  switch (req.type) {
    case MessageType.DISCOVER:
      return answer('offer', MessageType.OFFER, node.ip);
    case MessageType.REQUEST: {
      // SELECTING names the chosen server; if that is another one, stay silent.
      if (req.serverId && req.serverId !== config.ip) {
        return { kind: 'ignored', firmware, detail: `client chose server ${req.serverId}` };
      }
      // SELECTING and INIT-REBOOT ask for an address in option 50, RENEWING/REBINDING in ciaddr.
      const asked = req.requestedIp ?? (req.ciaddr !== ANY ? req.ciaddr : null);
      if (asked && asked !== node.ip) {
        const nak: DhcpReply = {
          xid: req.xid,
          flags: req.giaddr !== ANY ? req.flags | BROADCAST_FLAG : req.flags,
          ciaddr: ANY,
          yiaddr: ANY,
          siaddr: ANY,
          giaddr: req.giaddr,
          mac: req.mac,
          file: '',
          options: { 53: MessageType.NAK, 54: config.ip, 56: `address ${asked} is not yours, ${node.ip} is` },
        };
        if (req.clientId) nak.options[61] = req.clientId;
        return {
          kind: 'nak',
          reply: nak,
          to: destination(req, MessageType.NAK, broadcast),
          firmware,
          ip: asked,
          detail: `requested ${asked}, planned ${node.ip}`,
        };
      }
      return answer('ack', MessageType.ACK, node.ip);
    }
    case MessageType.INFORM:
      return answer('ack', MessageType.ACK, ANY);
    case MessageType.RELEASE:
      return { kind: 'release', firmware, ip: req.ciaddr, detail: 'released' };
    case MessageType.DECLINE:
      // The planned address answers ARP from someone else: nothing to reassign, say it loudly.
      return {
        kind: 'decline',
        firmware,
        ip: req.requestedIp,
        detail: `declined ${req.requestedIp ?? node.ip}: address in use on the network`,
      };
    default:
      return { kind: 'ignored', firmware, detail: `unexpected ${typeName(req.type)}` };
  }
}

function typeName(type: number | null): string {
  if (type === null) return 'BOOTP request without a DHCP message type';
  return messageNames[type] ? `DHCP${messageNames[type]}` : `message type ${type}`;
}
