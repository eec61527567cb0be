import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NodeRecord } from '../../../../src/lib/services/config.js';
import {
  type DhcpRequest,
  decodeRequest,
  encodeReply,
  MessageType,
} from '../../../../src/lib/services/dhcp/packet.js';
import {
  type Decision,
  decide,
  type PolicyConfig,
  subnetInfo,
} from '../../../../src/lib/services/dhcp/policy.js';
import { describePacket, readHexFixture, readTextFixture } from './wire.js';

const config: PolicyConfig = {
  ip: '10.0.0.1',
  domain: 'nancy.grid5000.fr',
  leaseSeconds: 600,
  network: { subnet: '10.0.0.0/24', gateway: '10.0.0.254', dns: ['10.0.0.1', '10.0.0.2'] },
  ports: { http: 8080 },
};
const node: NodeRecord = {
  mac: '52:54:00:00:00:0a',
  ip: '10.0.0.10',
  hostname: 'grappe-1',
  fqdn: 'grappe-1.nancy.grid5000.fr',
  profile: 'deploy',
};
const uuid = [0, ...Array.from({ length: 16 }, (_, i) => i)];
const pxeBios = { userClass: null, arch: 0, vendorClass: 'PXEClient:Arch:00000:UNDI:002001' };

function request(over: Partial<DhcpRequest>): DhcpRequest {
  return {
    type: MessageType.DISCOVER,
    xid: 42,
    flags: 0,
    ciaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    mac: node.mac,
    requestedIp: null,
    serverId: null,
    paramList: [1, 3, 6],
    hints: { userClass: null, arch: null, vendorClass: null },
    clientId: null,
    uuid: null,
    ndi: null,
    ...over,
  };
}

interface Row {
  name: string;
  req: Partial<DhcpRequest>;
  known?: boolean;
  config?: Partial<PolicyConfig>;
  kind: Decision['kind'];
  firmware?: string;
  yiaddr?: string;
  siaddr?: string;
  file?: string;
  to?: string;
  /** Options that must be present with these values. */
  options?: Record<number, unknown>;
  /** Options that must be absent. */
  absent?: number[];
  detail?: RegExp;
}

const ipxeUrl = `http://10.0.0.1:8080/boot/${node.mac}.ipxe`;

const rows: Row[] = [
  {
    name: 'iPXE DISCOVER → OFFER with the script URL in file and 67, and no-pxedhcp',
    req: { hints: { userClass: 'iPXE', arch: 0, vendorClass: 'PXEClient:Arch:00000:UNDI:002001' }, uuid },
    kind: 'offer',
    firmware: 'ipxe',
    yiaddr: node.ip,
    siaddr: '0.0.0.0',
    file: ipxeUrl,
    to: '10.0.0.255:68',
    options: { 53: MessageType.OFFER, 67: ipxeUrl, 175: [176, 1, 1] },
    absent: [60, 43, 66, 97],
  },
  {
    name: 'BIOS PXE DISCOVER → undionly.kpxe from next-server, PXEClient, UUID echoed',
    req: { hints: pxeBios, uuid, clientId: [1, 0x52, 0x54, 0, 0, 0, 10] },
    kind: 'offer',
    firmware: 'bios-pxe',
    yiaddr: node.ip,
    siaddr: config.ip,
    file: 'undionly.kpxe',
    options: {
      67: 'undionly.kpxe',
      66: config.ip,
      60: 'PXEClient',
      43: [6, 1, 8, 255],
      97: uuid,
      61: [1, 0x52, 0x54, 0, 0, 0, 10],
    },
    absent: [175],
  },
  {
    name: 'UEFI PXE (arch 7) DISCOVER → ipxe.efi',
    req: { hints: { userClass: null, arch: 7, vendorClass: 'PXEClient:Arch:00007:UNDI:003016' } },
    kind: 'offer',
    firmware: 'uefi-pxe',
    siaddr: config.ip,
    file: 'ipxe.efi',
    options: { 67: 'ipxe.efi', 60: 'PXEClient' },
    absent: [97],
  },
  {
    name: 'UEFI PXE (arch 9) DISCOVER → ipxe.efi',
    req: { hints: { userClass: null, arch: 9, vendorClass: 'PXEClient:Arch:00009:UNDI:003016' } },
    kind: 'offer',
    firmware: 'uefi-pxe',
    file: 'ipxe.efi',
  },
  {
    name: 'plain client (udhcpc) DISCOVER → an address and no boot file',
    req: { hints: { userClass: null, arch: null, vendorClass: 'udhcp 1.35.0' } },
    kind: 'offer',
    firmware: 'plain',
    yiaddr: node.ip,
    siaddr: '0.0.0.0',
    file: '',
    options: {
      1: '255.255.255.0',
      3: ['10.0.0.254'],
      6: ['10.0.0.1', '10.0.0.2'],
      12: 'grappe-1',
      15: 'nancy.grid5000.fr',
      28: '10.0.0.255',
      51: 600,
      54: '10.0.0.1',
    },
    absent: [60, 66, 67, 43, 175],
  },
  { name: 'unknown MAC DISCOVER → no answer', req: {}, known: false, kind: 'ignored', detail: /unknown MAC/ },
  {
    name: 'unknown MAC REQUEST → no answer (not a NAK: not ours to refuse)',
    req: { type: MessageType.REQUEST, requestedIp: '10.0.0.99' },
    known: false,
    kind: 'ignored',
  },
  {
    name: 'SELECTING REQUEST for the planned address → ACK',
    req: { type: MessageType.REQUEST, requestedIp: node.ip, serverId: config.ip, hints: pxeBios },
    kind: 'ack',
    yiaddr: node.ip,
    file: 'undionly.kpxe',
    to: '10.0.0.255:68',
    options: { 53: MessageType.ACK, 51: 600 },
  },
  {
    name: 'SELECTING REQUEST for another address → NAK, broadcast',
    req: { type: MessageType.REQUEST, requestedIp: '10.0.0.77', serverId: config.ip, clientId: [1, 2, 3] },
    kind: 'nak',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    file: '',
    to: '10.0.0.255:68',
    options: { 53: MessageType.NAK, 54: config.ip, 61: [1, 2, 3] },
    absent: [1, 3, 51, 67],
    detail: /requested 10\.0\.0\.77, planned 10\.0\.0\.10/,
  },
  {
    name: 'REQUEST naming another server → silent',
    req: { type: MessageType.REQUEST, requestedIp: node.ip, serverId: '10.0.0.200' },
    kind: 'ignored',
    detail: /chose server 10\.0\.0\.200/,
  },
  {
    name: 'INIT-REBOOT REQUEST for another address → NAK',
    req: { type: MessageType.REQUEST, requestedIp: '192.168.1.5' },
    kind: 'nak',
  },
  {
    name: 'RENEWING REQUEST (ciaddr) → ACK unicast to the client',
    req: { type: MessageType.REQUEST, ciaddr: node.ip },
    kind: 'ack',
    yiaddr: node.ip,
    to: `${node.ip}:68`,
  },
  {
    name: 'RENEWING REQUEST from a wrong ciaddr → NAK, broadcast',
    req: { type: MessageType.REQUEST, ciaddr: '10.0.0.77' },
    kind: 'nak',
    to: '10.0.0.255:68',
  },
  {
    name: 'INFORM → ACK without an address or lease time, to ciaddr',
    req: { type: MessageType.INFORM, ciaddr: node.ip },
    kind: 'ack',
    yiaddr: '0.0.0.0',
    to: `${node.ip}:68`,
    options: { 53: MessageType.ACK, 6: ['10.0.0.1', '10.0.0.2'] },
    absent: [51],
  },
  {
    name: 'relayed DISCOVER → OFFER to the relay on port 67',
    req: { giaddr: '10.0.0.250' },
    kind: 'offer',
    to: '10.0.0.250:67',
  },
  {
    name: 'DISCOVER relayed from another subnet → silent',
    req: { giaddr: '10.0.5.1' },
    kind: 'ignored',
    detail: /relayed by 10\.0\.5\.1, outside the node's subnet 10\.0\.0\.0\/24/,
  },
  {
    name: 'REQUEST relayed from another subnet → silent, no NAK to that relay',
    req: { type: MessageType.REQUEST, requestedIp: '10.0.0.77', giaddr: '192.168.1.1' },
    kind: 'ignored',
    detail: /relayed by 192\.168\.1\.1/,
  },
  {
    name: 'INFORM from an address not the planned one → silent, nothing unicast there',
    req: { type: MessageType.INFORM, ciaddr: '10.0.0.77' },
    kind: 'ignored',
    detail: /ciaddr 10\.0\.0\.77, planned 10\.0\.0\.10/,
  },
  {
    name: 'DISCOVER with a ciaddr not the planned one → silent',
    req: { ciaddr: '203.0.113.9' },
    kind: 'ignored',
    detail: /ciaddr 203\.0\.113\.9/,
  },
  {
    name: 'RELEASE of an address not the planned one → ignored, not reported as a release',
    req: { type: MessageType.RELEASE, ciaddr: '10.0.0.77' },
    kind: 'ignored',
  },
  {
    name: 'configured broadcast address wins over the computed one',
    req: {},
    config: { broadcast: '10.0.0.127' },
    kind: 'offer',
    to: '10.0.0.127:68',
    options: { 28: '10.0.0.127' },
  },
  { name: 'RELEASE → no reply', req: { type: MessageType.RELEASE, ciaddr: node.ip }, kind: 'release' },
  {
    name: 'DECLINE → no reply, reported',
    req: { type: MessageType.DECLINE, requestedIp: node.ip },
    kind: 'decline',
    detail: /in use/,
  },
  { name: 'a client sending an OFFER → ignored', req: { type: MessageType.OFFER }, kind: 'ignored' },
  { name: 'BOOTP without option 53 → ignored', req: { type: null }, kind: 'ignored', detail: /BOOTP/ },
];

describe('dhcp reply policy', () => {
  for (const row of rows) {
    it(row.name, () => {
      const d = decide(request(row.req), row.known === false ? null : node, { ...config, ...row.config });
      assert.equal(d.kind, row.kind);
      if (row.firmware) assert.equal(d.firmware, row.firmware);
      if (row.detail) assert.match(d.detail, row.detail);
      if (!('reply' in d)) {
        for (const k of ['yiaddr', 'file', 'to', 'options'] as const)
          assert.equal(row[k], undefined, `row expects ${k}`);
        return;
      }
      const r = d.reply;
      assert.equal(r.xid, 42);
      assert.equal(r.mac, node.mac);
      if (row.yiaddr) assert.equal(r.yiaddr, row.yiaddr);
      if (row.siaddr) assert.equal(r.siaddr, row.siaddr);
      if (row.file !== undefined) assert.equal(r.file, row.file);
      if (row.to) assert.equal(`${d.to.address}:${d.to.port}`, row.to);
      const opts = r.options as unknown as Record<number, unknown>;
      for (const [code, v] of Object.entries(row.options ?? {}))
        assert.deepEqual(opts[Number(code)], v, `option ${code}`);
      for (const code of row.absent ?? [])
        assert.equal(opts[code], undefined, `option ${code} should be absent`);
      // Every reply must survive the package's formatter.
      assert.ok(encodeReply(r).length >= 300);
    });
  }

  it('subnetInfo', () => {
    assert.deepEqual(subnetInfo('10.0.0.0/24'), { netmask: '255.255.255.0', broadcast: '10.0.0.255' });
    assert.deepEqual(subnetInfo('10.213.0.0/16'), { netmask: '255.255.0.0', broadcast: '10.213.255.255' });
    assert.deepEqual(subnetInfo('192.168.4.8/29'), { netmask: '255.255.255.248', broadcast: '192.168.4.15' });
    assert.deepEqual(subnetInfo('10.0.0.5/24'), { netmask: '255.255.255.0', broadcast: '10.0.0.255' });
  });
});

// The captures in test/fixtures/dhcp (see its README) were taken on the wire between this server
// and qemu's iPXE ROM / busybox udhcpc; the replies must stay byte for byte what those clients took.
describe('dhcp captured exchanges', () => {
  const captureConfig: PolicyConfig = {
    ip: '10.99.0.1',
    domain: 'nancy.grid5000.fr',
    leaseSeconds: 3600,
    network: { subnet: '10.99.0.0/24', gateway: '10.99.0.1', dns: ['10.99.0.1'] },
    ports: { http: 80 },
  };
  const captureNode: NodeRecord = {
    mac: '52:54:00:12:34:56',
    ip: '10.99.0.50',
    hostname: 'grappe-1',
    fqdn: 'grappe-1.nancy.grid5000.fr',
    profile: 'deploy',
  };
  for (const [req, rep] of [
    ['ipxe-discover', 'ipxe-offer'],
    ['ipxe-request', 'ipxe-ack'],
    ['udhcpc-discover', 'udhcpc-offer'],
    ['udhcpc-request', 'udhcpc-ack'],
  ]) {
    it(`${req} → ${rep}`, () => {
      assert.equal(describePacket(readHexFixture(req)), readTextFixture(req));
      const d = decide(decodeRequest(readHexFixture(req)), captureNode, captureConfig);
      assert.ok('reply' in d, d.kind);
      const bytes = encodeReply(d.reply);
      assert.equal(describePacket(bytes), readTextFixture(rep));
      assert.equal(bytes.toString('hex'), readHexFixture(rep).toString('hex'));
    });
  }
});
