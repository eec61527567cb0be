import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import {
  canonicalFrame,
  decodeArch,
  decodeNdi,
  decodeRequest,
  decodeUserClass,
  decodeUuid,
  encodeReply,
  MalformedPacket,
  MessageType,
} from '../../../../src/lib/services/dhcp/packet.js';
import { buildPacket, describePacket, parsePacket, readHexFixture } from './wire.js';

const mac = '52:54:00:00:00:02';
const uuid = [0, ...Array.from({ length: 16 }, (_, i) => i * 17)];

describe('dhcp option decoders', () => {
  const userClass: [string, number[] | null, string | null][] = [
    ['iPXE as it sends it (bare string)', [...Buffer.from('iPXE')], 'iPXE'],
    ['iPXE RFC 3004 length-prefixed', [4, ...Buffer.from('iPXE')], 'iPXE'],
    ['several RFC 3004 classes', [4, ...Buffer.from('iPXE'), 3, ...Buffer.from('lab')], 'iPXE,lab'],
    ['a bare string with a NUL terminator', [...Buffer.from('gPXE'), 0], 'gPXE'],
    ['empty', [], null],
    ['absent', null, null],
  ];
  for (const [name, bytes, want] of userClass) {
    it(`option 77: ${name}`, () => assert.equal(decodeUserClass(bytes), want));
  }

  const arch: [number[] | null, number | null][] = [
    [[0, 0], 0],
    [[0, 7], 7],
    [[0, 9], 9],
    [[0, 7, 0, 0], 7],
    [[0], null],
    [null, null],
  ];
  for (const [bytes, want] of arch) {
    it(`option 93 ${JSON.stringify(bytes)} → ${want}`, () => assert.equal(decodeArch(bytes), want));
  }

  it('option 94: UNDI versions', () => {
    assert.equal(decodeNdi([1, 2, 1]), 'UNDI 2.1');
    assert.equal(decodeNdi([1, 3, 16]), 'UNDI 3.16');
    assert.equal(decodeNdi([1, 2]), null);
  });

  it('option 97: a type-0 UUID, and nothing else', () => {
    assert.equal(decodeUuid(uuid), '00112233-4455-6677-8899-aabbccddeeff');
    assert.equal(decodeUuid([1, ...uuid.slice(1)]), null);
    assert.equal(decodeUuid(uuid.slice(0, 16)), null);
    assert.equal(decodeUuid(null), null);
  });
});

describe('dhcp request decoding', () => {
  const pxeDiscover = () =>
    buildPacket({
      xid: 0x1234abcd,
      mac,
      options: [
        [53, [1]],
        [55, [1, 3, 6, 12, 15, 28, 43, 60, 66, 67, 97]],
        [93, [0, 7]],
        [94, [1, 3, 16]],
        [97, uuid],
        [60, 'PXEClient:Arch:00007:UNDI:003016'],
        [61, [1, 0x52, 0x54, 0, 0, 0, 2]],
      ],
    });

  it('decodes a PXE DISCOVER: message type, MAC, and the PXE options the package lacks', () => {
    const r = decodeRequest(pxeDiscover());
    assert.equal(r.type, MessageType.DISCOVER);
    assert.equal(r.xid, 0x1234abcd);
    assert.equal(r.mac, mac);
    assert.deepEqual(r.hints, { userClass: null, arch: 7, vendorClass: 'PXEClient:Arch:00007:UNDI:003016' });
    assert.deepEqual(r.uuid, uuid);
    assert.equal(r.ndi, 'UNDI 3.16');
    assert.deepEqual(r.clientId, [1, 0x52, 0x54, 0, 0, 0, 2]);
    assert.deepEqual(r.paramList, [1, 3, 6, 12, 15, 28, 43, 60, 66, 67, 97]);
    assert.equal(r.requestedIp, null);
  });

  it('decodes the DISCOVER and REQUEST captured from the iPXE ROM qemu ships', () => {
    const d = decodeRequest(readHexFixture('ipxe-discover'));
    assert.equal(d.type, MessageType.DISCOVER);
    assert.equal(d.mac, '52:54:00:12:34:56');
    assert.deepEqual(d.hints, {
      userClass: 'iPXE',
      arch: 0,
      vendorClass: 'PXEClient:Arch:00000:UNDI:002001',
    });
    assert.equal(d.ndi, 'UNDI 2.1');
    assert.equal(decodeUuid(d.uuid), '00000000-0000-0000-0000-000000000000');
    assert.ok(d.paramList.includes(60) && d.paramList.includes(175));
    const r = decodeRequest(readHexFixture('ipxe-request'));
    assert.equal(r.type, MessageType.REQUEST);
    assert.equal(r.xid, d.xid);
    assert.equal(r.requestedIp, '10.99.0.50');
    assert.equal(r.serverId, '10.99.0.1');
  });

  it('decodes the DISCOVER captured from busybox udhcpc', () => {
    const d = decodeRequest(readHexFixture('udhcpc-discover'));
    assert.equal(d.type, MessageType.DISCOVER);
    assert.deepEqual(d.hints, { userClass: null, arch: null, vendorClass: 'udhcp 1.35.0' });
    assert.equal(d.uuid, null);
  });

  it('reads options correctly around pad bytes (the package alone shifts them)', () => {
    const b = buildPacket({
      xid: 1,
      mac,
      options: [
        [0, []],
        [53, [3]],
        [0, []],
        [0, []],
        [0, []],
        [50, [10, 0, 0, 7]],
        [54, [10, 0, 0, 1]],
      ],
    });
    const r = decodeRequest(b);
    assert.equal(r.type, MessageType.REQUEST);
    assert.equal(r.requestedIp, '10.0.0.7');
    assert.equal(r.serverId, '10.0.0.1');
  });

  it('accepts options without an end marker when they end with the packet', () => {
    const b = buildPacket({ xid: 2, mac, options: [[53, [1]]], noEnd: true }).subarray(0, 243);
    assert.equal(decodeRequest(b).type, MessageType.DISCOVER);
  });

  it('does not log unknown options (the package prints one line per option it does not know)', () => {
    const spy = mock.method(console, 'error', () => {});
    try {
      decodeRequest(
        buildPacket({
          xid: 3,
          mac,
          options: [
            [53, [1]],
            [82, [1, 2, 0, 1]],
            [150, [1, 2, 3]],
            [250, []],
          ],
        }),
      );
      assert.equal(spy.mock.callCount(), 0);
    } finally {
      spy.mock.restore();
    }
  });

  const malformed: [string, Buffer][] = [
    ['an empty packet', Buffer.alloc(0)],
    ['a truncated header', readHexFixture('udhcpc-discover').subarray(0, 100)],
    [
      'no magic cookie',
      Buffer.concat([readHexFixture('udhcpc-discover').subarray(0, 236), Buffer.alloc(64)]),
    ],
    [
      'an option running past the end',
      Buffer.concat([
        buildPacket({ xid: 4, mac, options: [[53, [1]]] }).subarray(0, 243),
        Buffer.from([12, 40, 65]),
      ]),
    ],
    ['a message type of two bytes', buildPacket({ xid: 5, mac, options: [[53, [1, 1]]] })],
    [
      'a requested address of three bytes',
      buildPacket({
        xid: 6,
        mac,
        options: [
          [53, [3]],
          [50, [10, 0, 0]],
        ],
      }),
    ],
    ['a BOOTREPLY', buildPacket({ op: 2, xid: 7, mac, options: [[53, [2]]] })],
    ['a non-Ethernet hardware type', buildPacket({ htype: 6, xid: 8, mac, options: [[53, [1]]] })],
    ['a 16-byte hardware address', buildPacket({ hlen: 16, xid: 9, mac, options: [[53, [1]]] })],
  ];
  for (const [name, buf] of malformed) {
    it(`rejects ${name} as malformed`, () => assert.throws(() => decodeRequest(buf), MalformedPacket));
  }

  it('keeps the MAC of a malformed packet when it has one', () => {
    const e = (() => {
      try {
        decodeRequest(buildPacket({ xid: 5, mac, options: [[53, [1, 1]]] }));
      } catch (err) {
        return err as MalformedPacket;
      }
    })();
    assert.equal(e?.mac, mac);
  });

  it('throws nothing but MalformedPacket on random bytes and on mutated real packets', () => {
    // A fixed-seed generator so a failure can be replayed.
    let seed = 0x5eed;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const bases = ['ipxe-discover', 'ipxe-request', 'udhcpc-discover'].map(readHexFixture);
    let decoded = 0;
    for (let i = 0; i < 3000; i++) {
      let b: Buffer;
      if (i % 3 === 0) {
        b = Buffer.from(Array.from({ length: Math.floor(rand() * 600) }, () => Math.floor(rand() * 256)));
      } else {
        b = Buffer.from(bases[i % bases.length]);
        for (let k = 0; k < 1 + Math.floor(rand() * 6); k++) {
          b[240 + Math.floor(rand() * (b.length - 240))] = Math.floor(rand() * 256);
        }
        if (i % 7 === 0) b = b.subarray(0, 240 + Math.floor(rand() * (b.length - 240)));
      }
      try {
        decodeRequest(b);
        decoded++;
      } catch (e) {
        assert.ok(e instanceof MalformedPacket, `packet ${i} (${b.toString('hex')}) threw ${e}`);
      }
    }
    // Mutations that keep the options well-formed still decode: the guard is not rejecting all.
    assert.ok(decoded > 100, `only ${decoded} decoded`);
  });

  it('canonicalFrame drops pads and ends at the end option', () => {
    const b = buildPacket({
      xid: 10,
      mac,
      options: [
        [0, []],
        [53, [1]],
        [0, []],
      ],
    });
    const c = canonicalFrame(b);
    assert.deepEqual([...c.subarray(240)], [53, 1, 1, 255]);
  });
});

describe('dhcp reply encoding', () => {
  const reply = {
    xid: 0xdeadbeef,
    flags: 0x8000,
    ciaddr: '0.0.0.0',
    yiaddr: '10.0.0.10',
    siaddr: '10.0.0.1',
    giaddr: '0.0.0.0',
    mac,
    file: 'undionly.kpxe',
    options: {
      53: MessageType.OFFER,
      54: '10.0.0.1',
      1: '255.255.255.0',
      3: ['10.0.0.254'],
      6: ['10.0.0.1', '10.0.0.2'],
      12: 'n-1',
      51: 600,
      60: 'PXEClient',
      43: [6, 1, 8, 255],
      66: undefined,
      67: 'undionly.kpxe',
      97: uuid,
    },
  };

  it('sets the BOOTP file and siaddr fields and every option, skipping unset ones', () => {
    const b = encodeReply(reply);
    assert.ok(b.length >= 300, 'RFC 951 minimum size');
    const p = parsePacket(b);
    assert.equal(p.op, 2);
    assert.equal(p.xid, 0xdeadbeef);
    assert.equal(p.flags, 0x8000);
    assert.equal(p.yiaddr, '10.0.0.10');
    assert.equal(p.siaddr, '10.0.0.1');
    assert.equal(p.mac, mac);
    assert.equal(p.file, 'undionly.kpxe');
    assert.deepEqual(
      [...p.options.keys()].sort((a, b) => a - b),
      [1, 3, 6, 12, 43, 51, 53, 54, 60, 67, 97],
    );
    assert.deepEqual([...p.options.get(6)!], [10, 0, 0, 1, 10, 0, 0, 2]);
    assert.deepEqual([...p.options.get(97)!], uuid);
    assert.equal(p.options.get(51)!.readUInt32BE(0), 600);
    assert.match(describePacket(b), /option 53 OFFER/);
  });
});
