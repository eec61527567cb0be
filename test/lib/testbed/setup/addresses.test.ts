// Where setup reaches a reinstalled machine: Grid'5000's DNS names for its own API, the reference
// document's address for any other (a twin), and nothing else.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NodeDoc } from '../../../../src/lib/g5k/types.js';
import { isGrid5000Api, machineAddress } from '../../../../src/lib/testbed/setup/addresses.js';

const doc = (ip?: string) =>
  ({
    uid: 'grappe-1',
    network_adapters: [
      {
        device: 'eth0',
        interface: 'Ethernet',
        mountable: true,
        mounted: true,
        management: false,
        ...(ip ? { ip } : {}),
      },
    ],
  }) as unknown as NodeDoc;
const g5k = { url: 'https://api.grid5000.fr/stable', domain: 'grid5000.fr' };
const twin = { url: 'http://127.0.0.1:8800/stable', domain: 'grid5000.fr' };
const m = { fqdn: 'grappe-1.nancy.grid5000.fr', site: 'nancy' };

describe('machine addresses', () => {
  it("tells Grid'5000's API (public or its frontend proxy) from any other", () => {
    assert.equal(isGrid5000Api('https://api.grid5000.fr/stable'), true);
    assert.equal(isGrid5000Api('https://api-proxy.nancy.grid5000.fr/stable'), true);
    assert.equal(isGrid5000Api('http://127.0.0.1:8800/stable'), false);
    assert.equal(isGrid5000Api('https://grid5000.fr.example.org/stable'), false);
  });

  it("names a node in a KaVLAN as Grid'5000's DNS does, and by its FQDN outside one", () => {
    assert.equal(
      machineAddress({ ...m, vlan: 4, doc: doc('172.16.70.1') }, g5k),
      'grappe-1-kavlan-4.nancy.grid5000.fr',
    );
    assert.equal(machineAddress({ ...m, vlan: null, doc: doc('172.16.70.1') }, g5k), m.fqdn);
  });

  it("reaches a twin's machine at its document's address, VLAN or not, and refuses one without", () => {
    assert.equal(machineAddress({ ...m, vlan: 4, doc: doc('10.239.0.5') }, twin), '10.239.0.5');
    assert.equal(machineAddress({ ...m, vlan: null, doc: doc('10.239.0.5') }, twin), '10.239.0.5');
    assert.throws(
      () => machineAddress({ ...m, vlan: 4, doc: doc() }, twin),
      /grappe-1\.nancy\.grid5000\.fr: its reference document gives no address/,
    );
  });
});
