import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type ServiceNodeInput, serviceNodeConfigSchema } from '../../../../src/lib/services/config.js';
import { renderZone, reverseName, Zone, type ZoneRecord } from '../../../../src/lib/services/dns/zone.js';
import { graphene1, nancyDnsNode } from './nancy.js';

const zoneInput: ServiceNodeInput = {
  // Not a name in the domain: the NS becomes ns.<domain>.
  ...nancyDnsNode,
  name: 'kb-svc',
  nodes: [
    graphene1,
    {
      mac: '00:16:3e:0a:00:03',
      ip: '10.213.1.3',
      hostname: 'graphene-2',
      fqdn: 'Graphene-2.Nancy.Grid5000.FR.',
    },
  ],
  dns: {
    records: [
      { name: 'vm-1', ip: '10.213.2.10' },
      { name: 'web.vms.nancy.grid5000.fr', ip: '10.213.3.1' },
      { name: 'web.vms.nancy.grid5000.fr', ip: '10.213.3.2' },
      { name: 'gw.rennes.grid5000.fr', ip: '192.168.5.1' },
      // A node listed twice: one A record, one PTR.
      { name: 'graphene-1.nancy.grid5000.fr', ip: '10.213.0.2' },
    ],
  },
};
const zone = Zone.fromConfig(serviceNodeConfigSchema.parse(zoneInput), { serial: 7 });

function show(r: ZoneRecord): string {
  switch (r.type) {
    case 'A':
      return `${r.name} A ${r.address}`;
    case 'NS':
      return `${r.name} NS ${r.ns}`;
    case 'PTR':
      return `${r.name} PTR ${r.domain}`;
    case 'SOA':
      return `${r.name} SOA ${r.primary} ${r.admin} ${r.serial}`;
  }
}

const SOA = 'nancy.grid5000.fr SOA ns.nancy.grid5000.fr hostmaster.nancy.grid5000.fr 7';
const RSOA = '213.10.in-addr.arpa SOA ns.nancy.grid5000.fr hostmaster.nancy.grid5000.fr 7';

describe('Zone.lookup', () => {
  // name, type → rcode, answers, authorities, additionals (null rcode: not ours)
  const table: [string, string, string | null, string[], string[]?, string[]?][] = [
    ['graphene-1.nancy.grid5000.fr', 'A', 'NOERROR', ['graphene-1.nancy.grid5000.fr A 10.213.0.2']],
    ['GRAPHENE-1.nancy.grid5000.fr.', 'A', 'NOERROR', ['graphene-1.nancy.grid5000.fr A 10.213.0.2']],
    ['graphene-2.nancy.grid5000.fr', 'A', 'NOERROR', ['graphene-2.nancy.grid5000.fr A 10.213.1.3']],
    ['vm-1.nancy.grid5000.fr', 'A', 'NOERROR', ['vm-1.nancy.grid5000.fr A 10.213.2.10']],
    [
      'web.vms.nancy.grid5000.fr',
      'A',
      'NOERROR',
      ['web.vms.nancy.grid5000.fr A 10.213.3.1', 'web.vms.nancy.grid5000.fr A 10.213.3.2'],
    ],
    ['ns.nancy.grid5000.fr', 'A', 'NOERROR', ['ns.nancy.grid5000.fr A 10.213.0.1']],
    ['graphene-1.nancy.grid5000.fr', 'AAAA', 'NOERROR', [], [SOA]],
    ['graphene-1.nancy.grid5000.fr', 'MX', 'NOERROR', [], [SOA]],
    ['vms.nancy.grid5000.fr', 'A', 'NOERROR', [], [SOA]],
    ['nope.nancy.grid5000.fr', 'A', 'NXDOMAIN', [], [SOA]],
    ['a.graphene-1.nancy.grid5000.fr', 'A', 'NXDOMAIN', [], [SOA]],
    ['nancy.grid5000.fr', 'SOA', 'NOERROR', [SOA]],
    [
      'nancy.grid5000.fr',
      'NS',
      'NOERROR',
      ['nancy.grid5000.fr NS ns.nancy.grid5000.fr'],
      [],
      ['ns.nancy.grid5000.fr A 10.213.0.1'],
    ],
    ['nancy.grid5000.fr', 'A', 'NOERROR', [], [SOA]],
    [
      '2.0.213.10.in-addr.arpa',
      'PTR',
      'NOERROR',
      ['2.0.213.10.in-addr.arpa PTR graphene-1.nancy.grid5000.fr'],
    ],
    [
      '3.1.213.10.in-addr.arpa',
      'PTR',
      'NOERROR',
      ['3.1.213.10.in-addr.arpa PTR graphene-2.nancy.grid5000.fr'],
    ],
    ['1.0.213.10.in-addr.arpa', 'PTR', 'NOERROR', ['1.0.213.10.in-addr.arpa PTR ns.nancy.grid5000.fr']],
    ['1.5.168.192.in-addr.arpa', 'PTR', 'NOERROR', ['1.5.168.192.in-addr.arpa PTR gw.rennes.grid5000.fr']],
    ['99.0.213.10.in-addr.arpa', 'PTR', 'NXDOMAIN', [], [RSOA]],
    ['0.213.10.in-addr.arpa', 'PTR', 'NOERROR', [], [RSOA]],
    [
      '213.10.in-addr.arpa',
      'NS',
      'NOERROR',
      ['213.10.in-addr.arpa NS ns.nancy.grid5000.fr'],
      [],
      ['ns.nancy.grid5000.fr A 10.213.0.1'],
    ],
    ['gw.rennes.grid5000.fr', 'A', 'NOERROR', ['gw.rennes.grid5000.fr A 192.168.5.1']],
    ['gw.rennes.grid5000.fr', 'AAAA', 'NOERROR', []],
    ['www.rennes.grid5000.fr', 'A', null, []],
    ['grid5000.fr', 'SOA', null, []],
    ['example.org', 'A', null, []],
    ['1.1.1.1.in-addr.arpa', 'PTR', null, []],
    ['', 'NS', null, []],
  ];
  for (const [name, type, rcode, answers, authorities = [], additionals = []] of table) {
    it(`${name || '.'} ${type} → ${rcode ?? 'not ours'}`, () => {
      const r = zone.lookup(name, type);
      if (rcode === null) return assert.deepEqual(r, { authoritative: false });
      assert.ok(r.authoritative);
      assert.deepEqual(
        [r.rcode, r.answers.map(show), r.authorities.map(show), r.additionals.map(show)],
        [rcode, answers, authorities, additionals],
      );
    });
  }

  it('answers ANY with every record of the name', () => {
    const r = zone.lookup('nancy.grid5000.fr', 'ANY');
    assert.ok(r.authoritative);
    assert.deepEqual(r.answers.map((x) => x.type).sort(), ['NS', 'SOA']);
  });

  it('uses the service node as NS when its name is in the domain', () => {
    const z = Zone.fromConfig(
      serviceNodeConfigSchema.parse({
        ...zoneInput,
        name: 'kb-svc.nancy.grid5000.fr',
        dns: { records: [{ name: 'kb-svc', ip: '10.213.0.1' }] },
      }),
    );
    assert.equal(z.ns, 'kb-svc.nancy.grid5000.fr');
    const r = z.lookup('1.0.213.10.in-addr.arpa', 'PTR');
    assert.ok(r.authoritative);
    assert.deepEqual(r.answers.map(show), ['1.0.213.10.in-addr.arpa PTR kb-svc.nancy.grid5000.fr']);
  });

  it('cuts the reverse zone at the octet boundary above the prefix', () => {
    for (const [subnet, origin] of [
      ['10.213.0.0/20', '213.10.in-addr.arpa'],
      ['10.213.4.0/24', '4.213.10.in-addr.arpa'],
      ['10.213.4.128/25', '4.213.10.in-addr.arpa'],
      ['10.0.0.0/8', '10.in-addr.arpa'],
      ['8.0.0.0/6', '8.in-addr.arpa'],
      ['10.213.4.7/24', '4.213.10.in-addr.arpa'],
    ]) {
      const ip = subnet.split('/')[0].replace(/\.\d+$/, '.1');
      const z = Zone.fromConfig(
        serviceNodeConfigSchema.parse({
          ...zoneInput,
          ip,
          network: { ...zoneInput.network, subnet },
          nodes: [],
          dns: {},
        }),
      );
      assert.deepEqual(z.origins, ['nancy.grid5000.fr', origin], subnet);
    }
  });

  it('reverseName', () => assert.equal(reverseName('10.213.0.2'), '2.0.213.10.in-addr.arpa'));
});

describe('renderZone', () => {
  const files = renderZone(serviceNodeConfigSchema.parse(zoneInput), { serial: 2024010101 });

  it('renders the forward zone, then the reverse ones', () => {
    assert.deepEqual(
      files.map((f) => f.origin),
      ['nancy.grid5000.fr', '213.10.in-addr.arpa', '5.168.192.in-addr.arpa'],
    );
  });

  it('writes BIND master-file records relative to the origin', () => {
    const [fwd, rev, other] = files.map((f) => f.text.split('\n').map((l) => l.replace(/\s+/g, ' ').trim()));
    assert.ok(fwd.includes('$ORIGIN nancy.grid5000.fr.'));
    assert.ok(fwd.includes('$TTL 60'));
    assert.ok(fwd.includes('@ IN SOA ns.nancy.grid5000.fr. hostmaster.nancy.grid5000.fr. ('));
    assert.ok(fwd.includes('2024010101 ; serial'));
    assert.ok(fwd.includes('@ IN NS ns.nancy.grid5000.fr.'));
    assert.ok(fwd.includes('ns IN A 10.213.0.1'));
    assert.ok(fwd.includes('graphene-1 IN A 10.213.0.2'));
    assert.ok(fwd.includes('graphene-2 IN A 10.213.1.3'));
    assert.ok(fwd.includes('web.vms IN A 10.213.3.2'));
    assert.ok(fwd.some((l) => l.startsWith(';') && l.includes('gw.rennes.grid5000.fr')));
    assert.ok(!fwd.some((l) => l.startsWith('gw')), 'out-of-zone names are not records of this zone');
    assert.equal(fwd.filter((l) => l.startsWith('graphene-1 ')).length, 1);
    const ptrs = rev.filter((l) => l.includes(' PTR '));
    assert.deepEqual(ptrs, [
      '1.0 IN PTR ns.nancy.grid5000.fr.',
      '2.0 IN PTR graphene-1.nancy.grid5000.fr.',
      '3.1 IN PTR graphene-2.nancy.grid5000.fr.',
      '10.2 IN PTR vm-1.nancy.grid5000.fr.',
      '1.3 IN PTR web.vms.nancy.grid5000.fr.',
      '2.3 IN PTR web.vms.nancy.grid5000.fr.',
    ]);
    assert.ok(other.includes('1 IN PTR gw.rennes.grid5000.fr.'));
  });

  it('is deterministic for a given serial', () => {
    assert.deepEqual(renderZone(serviceNodeConfigSchema.parse(zoneInput), { serial: 2024010101 }), files);
  });
});
