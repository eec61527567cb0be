import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type dns2 from 'dns2';
import { Packet, TCPServer, UDPServer } from 'dns2';
import type { ServiceNodeInput } from '../../../../src/lib/services/config.js';
import { startDns } from '../../../../src/lib/services/dns/server.js';
import type { RoleContext, RunningRole } from '../../../../src/lib/services/role.js';
import { roleContext } from '../../../helpers/service-config.js';
import { graphene1, nancyDnsNode } from './nancy.js';

type Resource = dns2.Packet.Resource;
const T = Packet.TYPE;

const input: ServiceNodeInput = {
  ...nancyDnsNode,
  name: 'kb-svc.nancy.grid5000.fr',
  ports: { dns: 0, events: 0 },
  bind: '127.0.0.1',
  nodes: [graphene1],
  dns: { records: [{ name: 'vm-1', ip: '10.213.2.10' }] },
};

const ctxFor = (over: Partial<ServiceNodeInput> = {}): RoleContext => roleContext({ ...input, ...over });

function query(name: string, type: number, edns = false): Buffer {
  const p = new Packet();
  p.header = new Packet.Header({ id: Math.floor(Math.random() * 65535), rd: 1 });
  p.questions = [new Packet.Question(name, type, Packet.CLASS.IN)];
  if (edns) p.additionals = [(Packet.Resource.EDNS as unknown as (r: object[]) => Resource)([])];
  return p.toBuffer();
}

/** Sends raw bytes over UDP; the parsed reply, or null after `ms`. */
function udp(port: number, wire: Buffer, ms = 1500): Promise<Packet | null> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    const t = setTimeout(() => {
      s.close();
      resolve(null);
    }, ms);
    s.on('message', (msg) => {
      clearTimeout(t);
      s.close();
      resolve(Packet.parse(msg));
    });
    s.send(wire, port, '127.0.0.1');
  });
}

/** Sends one length-prefixed message over TCP (or raw bytes when `raw`); the reply or null. */
function tcp(port: number, wire: Buffer, raw = false, ms = 1500): Promise<Packet | null> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    const done = (p: Packet | null) => {
      clearTimeout(t);
      s.destroy();
      resolve(p);
    };
    const t = setTimeout(() => done(null), ms);
    s.on('connect', () => {
      if (raw) return s.write(wire);
      const len = Buffer.alloc(2);
      len.writeUInt16BE(wire.length);
      s.write(Buffer.concat([len, wire]));
    });
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(Packet.parse(buf.subarray(2)));
    });
    s.on('error', () => done(null));
    s.on('close', () => done(null));
  });
}

const rcode = (p: Packet | null) => p?.header.rcode;
const addresses = (p: Packet | null) => (p?.answers ?? []).map((a) => a.address ?? a.domain ?? a.ns);

let role: RunningRole;
before(async () => {
  role = await startDns(ctxFor());
});
after(async () => {
  await role?.close();
});

describe('DNS server (authoritative)', () => {
  it('answers A and PTR for planned names over UDP and TCP, with AA', async () => {
    for (const send of [udp, tcp]) {
      const a = await send(role.port, query('graphene-1.nancy.grid5000.fr', T.A));
      assert.equal(rcode(a), 0);
      assert.equal(a?.header.aa, 1);
      assert.equal(a?.header.qr, 1);
      assert.deepEqual(addresses(a), ['10.213.0.2']);
      const ptr = await send(role.port, query('10.2.213.10.in-addr.arpa', T.PTR));
      assert.deepEqual(addresses(ptr), ['vm-1.nancy.grid5000.fr']);
      assert.equal(ptr?.header.aa, 1);
    }
  });

  it('answers SOA and NS for the domain, the NS with its address', async () => {
    const soa = await udp(role.port, query('nancy.grid5000.fr', T.SOA));
    assert.equal(soa?.answers[0].primary, 'kb-svc.nancy.grid5000.fr');
    assert.equal(soa?.answers[0].admin, 'hostmaster.nancy.grid5000.fr');
    const ns = await udp(role.port, query('nancy.grid5000.fr', T.NS));
    assert.deepEqual(addresses(ns), ['kb-svc.nancy.grid5000.fr']);
    assert.deepEqual(
      ns?.additionals.map((r) => r.address),
      ['10.213.0.1'],
    );
  });

  it('gives NXDOMAIN with the SOA for unknown names in the domain, NODATA for other types', async () => {
    const nx = await udp(role.port, query('nope.nancy.grid5000.fr', T.A));
    assert.equal(rcode(nx), 3);
    assert.equal(nx?.header.aa, 1);
    assert.equal(nx?.authorities[0].type, T.SOA);
    const nodata = await udp(role.port, query('graphene-1.nancy.grid5000.fr', T.AAAA));
    assert.equal(rcode(nodata), 0);
    assert.equal(nodata?.answers.length, 0);
    assert.equal(nodata?.authorities[0].type, T.SOA);
  });

  it('refuses names outside the domain when there are no forwarders, and zone transfers', async () => {
    const r = await udp(role.port, query('example.org', T.A));
    assert.equal(rcode(r), 5);
    assert.equal(r?.header.aa, 0);
    assert.equal(r?.header.ra, 0);
    assert.equal(rcode(await tcp(role.port, query('nancy.grid5000.fr', 252))), 5);
  });

  it('echoes EDNS when the query has it', async () => {
    const r = await udp(role.port, query('graphene-1.nancy.grid5000.fr', T.A, true));
    assert.deepEqual(addresses(r), ['10.213.0.2']);
    assert.ok(r?.additionals.some((x) => x.type === T.EDNS));
    const plain = await udp(role.port, query('graphene-1.nancy.grid5000.fr', T.A));
    assert.ok(!plain?.additionals.some((x) => x.type === T.EDNS));
  });

  it('survives malformed queries and answers FORMERR or nothing', async () => {
    const good = query('graphene-1.nancy.grid5000.fr', T.A);
    const twoQuestions = Buffer.from(good);
    twoQuestions.writeUInt16BE(2, 4);
    const noQuestion = Buffer.from(good.subarray(0, 12));
    noQuestion.writeUInt16BE(0, 4);
    const response = Buffer.from(good);
    response[2] |= 0x80;
    const loop = Buffer.concat([good.subarray(0, 12), Buffer.from([0xc0, 12, 0, 1, 0, 1])]);
    for (const junk of [
      Buffer.alloc(0),
      Buffer.from([1, 2, 3]),
      good.subarray(0, 15),
      loop,
      Buffer.alloc(600, 0xff),
    ]) {
      await udp(role.port, junk, 100);
      await tcp(role.port, junk, false, 100);
    }
    await tcp(role.port, Buffer.from([0, 50, 1, 2]), true, 100);
    assert.equal(rcode(await udp(role.port, twoQuestions)), 1);
    assert.equal(rcode(await udp(role.port, noQuestion)), 1);
    assert.equal(await udp(role.port, response, 300), null, 'a response is not answered');
    const opcode = Buffer.from(good);
    opcode[2] |= 2 << 3; // STATUS
    assert.equal(rcode(await udp(role.port, opcode)), 4);
    // 12 bytes claiming 4 x 65535 records: dns2's parser alone spent seconds on this.
    const bomb = Buffer.alloc(12);
    for (const off of [4, 6, 8, 10]) bomb.writeUInt16BE(65535, off);
    await udp(role.port, bomb, 50);
    const t0 = Date.now();
    assert.deepEqual(addresses(await udp(role.port, good)), ['10.213.0.2']);
    assert.ok(Date.now() - t0 < 500, `answered after ${Date.now() - t0} ms`);
    // Still up on both transports.
    assert.deepEqual(addresses(await udp(role.port, good)), ['10.213.0.2']);
    assert.deepEqual(addresses(await tcp(role.port, good)), ['10.213.0.2']);
  });
});

describe('DNS server (lifecycle)', () => {
  it('fails to start on a taken port, and closes twice without error', async () => {
    const taken = createSocket('udp4');
    await new Promise<void>((r) => taken.bind(0, '127.0.0.1', r));
    try {
      await assert.rejects(
        startDns(ctxFor({ ports: { dns: taken.address().port, events: 0 } })),
        /EADDRINUSE/,
      );
    } finally {
      taken.close();
    }
    const r = await startDns(ctxFor());
    await r.close();
    await r.close();
  });

  it('does not forward to itself', async () => {
    const probe = createSocket('udp4');
    await new Promise<void>((r) => probe.bind(0, '127.0.0.1', r));
    const port = probe.address().port;
    await new Promise<void>((r) => probe.close(r));
    const self = await startDns(
      ctxFor({
        ports: { dns: port, events: 0 },
        ip: '127.0.0.1',
        dns: { records: [], forward: ['127.0.0.1'] },
      }),
      { upstreamPort: port, forwardTimeoutMs: 300 },
    );
    try {
      assert.equal(rcode(await udp(self.port, query('www.example.org', T.A))), 5);
    } finally {
      await self.close();
    }
  });
});

describe('DNS server (forwarding)', () => {
  let upUdp: InstanceType<typeof UDPServer>;
  let upTcp: InstanceType<typeof TCPServer>;
  let upPort = 0;
  let fwd: RunningRole;
  let silent: RunningRole;
  const seen: string[] = [];

  before(async () => {
    // A fake upstream: answers 192.0.2.x, truncates big.example over UDP so it must be re-asked on TCP.
    const handle = (proto: string) => (req: Packet, send: (r: Packet) => unknown) => {
      const [q] = req.questions;
      seen.push(`${proto} ${q.name} rd=${req.header.rd}`);
      if (q.name === 'silent.example') return;
      const res = Packet.createResponseFromRequest(req);
      res.header.ra = 1;
      if (q.name === 'big.example' && proto === 'udp') res.header.tc = 1;
      else
        res.answers.push({
          name: q.name,
          type: T.A,
          class: 1,
          ttl: 30,
          address: proto === 'udp' ? '192.0.2.1' : '192.0.2.2',
        } as Resource);
      send(res);
    };
    upUdp = new UDPServer({ type: 'udp4' });
    upUdp.on('request', handle('udp'));
    await new Promise<void>((r) => upUdp.bind(0, '127.0.0.1', r));
    upPort = upUdp.address().port;
    upTcp = new TCPServer();
    upTcp.on('request', handle('tcp'));
    await new Promise<void>((r) => upTcp.listen(upPort, '127.0.0.1', r));
    fwd = await startDns(ctxFor({ dns: { records: [], forward: ['127.0.0.1', '127.0.0.2'] } }), {
      upstreamPort: upPort,
      forwardTimeoutMs: 300,
    });
    // An upstream that never answers.
    silent = await startDns(ctxFor({ dns: { records: [], forward: ['127.0.0.1'] } }), {
      upstreamPort: 9,
      forwardTimeoutMs: 200,
    });
  });
  after(async () => {
    await fwd?.close();
    await silent?.close();
    upUdp?.close();
    upTcp?.close();
  });

  it('relays answers for outside names from the first upstream, with the client’s id', async () => {
    const wire = query('www.example.org', T.A);
    const r = await udp(fwd.port, wire);
    assert.equal(r?.header.id, wire.readUInt16BE(0));
    assert.deepEqual(addresses(r), ['192.0.2.1']);
    assert.equal(r?.header.aa, 0);
    assert.ok(seen.includes('udp www.example.org rd=1'));
    // Names in the zone are still answered here, not forwarded.
    assert.deepEqual(addresses(await udp(fwd.port, query('graphene-1.nancy.grid5000.fr', T.A))), [
      '10.213.0.2',
    ]);
    assert.ok(!seen.some((s) => s.includes('graphene-1')));
  });

  it('re-asks over TCP when the upstream truncates, and over TCP from a TCP client', async () => {
    assert.deepEqual(addresses(await udp(fwd.port, query('big.example', T.A))), ['192.0.2.2']);
    assert.deepEqual(addresses(await tcp(fwd.port, query('www.example.org', T.A))), ['192.0.2.1']);
  });

  it('answers SERVFAIL when the upstream is silent, and says recursion is available', async () => {
    const t0 = Date.now();
    const r = await udp(silent.port, query('www.example.org', T.A));
    assert.equal(rcode(r), 2);
    assert.equal(r?.header.ra, 1);
    assert.ok(Date.now() - t0 < 1000);
    const s = await udp(fwd.port, query('silent.example', T.A));
    assert.equal(rcode(s), 2);
  });
});
