import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InputError } from '../../../src/lib/errors.js';
import { clusterOf, nodeFacts, primaryNic, usableNics } from '../../../src/lib/g5k/facts.js';
import type { NodeDoc } from '../../../src/lib/g5k/types.js';

// Shaped after a reference document of a two-socket node: BMC, InfiniBand, a second
// cabled-but-unconfigured Ethernet port and an uncabled one.
function grappe1(): NodeDoc {
  return {
    uid: 'grappe-1',
    type: 'node',
    architecture: { nb_procs: 2, nb_cores: 40, nb_threads: 80, platform_type: 'x86_64' },
    main_memory: { ram_size: 103079215104 },
    processor: { model: 'Intel Xeon', vendor: 'Intel', clock_speed: 2100000000, ht_capable: true },
    storage_devices: [
      {
        id: 'disk0',
        by_id: '/dev/disk/by-id/wwn-0x1',
        size: 480103981056,
        storage: 'SSD',
        interface: 'SATA',
      },
      {
        id: 'disk1',
        by_id: '/dev/disk/by-id/wwn-0x2',
        size: 8001563222016,
        storage: 'HDD',
        interface: 'SAS',
      },
    ],
    network_adapters: [
      {
        device: 'bmc',
        interface: 'Ethernet',
        management: true,
        mountable: false,
        mounted: false,
        enabled: true,
        mac: '3C:EC:EF:00:00:01',
        ip: '172.17.70.1',
        network_address: 'grappe-1-bmc.nancy.grid5000.fr',
        rate: 1000000000,
      },
      {
        device: 'eth1',
        name: 'ens1f1',
        interface: 'Ethernet',
        management: false,
        mountable: true,
        mounted: false,
        enabled: true,
        kavlan: true,
        mac: '3C:EC:EF:00:00:03',
        rate: 25000000000,
        driver: 'ice',
      },
      {
        device: 'eth0',
        name: 'ens1f0',
        interface: 'Ethernet',
        management: false,
        mountable: true,
        mounted: true,
        enabled: true,
        kavlan: true,
        mac: '3C:EC:EF:00:00:02',
        ip: '172.16.70.1',
        network_address: 'grappe-1.nancy.grid5000.fr',
        rate: 25000000000,
        driver: 'ice',
      },
      {
        device: 'eth2',
        name: 'eno1',
        interface: 'Ethernet',
        management: false,
        mountable: false,
        mounted: false,
        enabled: false,
        mac: '3C:EC:EF:00:00:04',
        rate: 1000000000,
        driver: 'igb',
      },
      {
        device: 'ib0',
        name: 'ibp1s0',
        interface: 'InfiniBand',
        management: false,
        mountable: true,
        mounted: true,
        enabled: true,
        mac: '80:00:02:08:fe:80:00:00:00:00:00:00:00:00:00:00:00:00:00:01',
        ip: '172.18.70.1',
        rate: 100000000000,
        driver: 'mlx5_core',
      },
    ],
    supported_job_types: { deploy: true, besteffort: true, virtual: 'ivt', max_walltime: 0 },
  };
}

describe('node facts', () => {
  it('keeps only cabled, non-BMC Ethernet adapters', () => {
    assert.deepEqual(
      usableNics(grappe1()).map((a) => a.device),
      ['eth1', 'eth0'],
    );
  });

  it('picks the mounted adapter as primary even when it is not listed first', () => {
    assert.equal(primaryNic(grappe1()).device, 'eth0');
  });

  it('falls back to the first usable adapter when none is mounted', () => {
    const doc = grappe1();
    for (const a of doc.network_adapters) a.mounted = false;
    assert.equal(primaryNic(doc).device, 'eth1');
  });

  it('refuses a node without a usable Ethernet adapter, naming it', () => {
    const doc = grappe1();
    doc.network_adapters = doc.network_adapters.filter((a) => a.interface !== 'Ethernet' || a.management);
    assert.throws(
      () => primaryNic(doc),
      (e: unknown) => e instanceof InputError && /grappe-1/.test(e.message),
    );
  });

  it('builds the host facts', () => {
    const facts = nodeFacts(grappe1(), 'nancy');
    assert.deepEqual(facts, {
      uid: 'grappe-1',
      fqdn: 'grappe-1.nancy.grid5000.fr',
      site: 'nancy',
      cluster: 'grappe',
      procs: 2,
      cores: 40,
      threads: 80,
      ramBytes: 103079215104,
      disks: [
        { id: 'disk0', sizeBytes: 480103981056, kind: 'SSD' },
        { id: 'disk1', sizeBytes: 8001563222016, kind: 'HDD' },
      ],
      primary: {
        device: 'eth0',
        name: 'ens1f0',
        mac: '3c:ec:ef:00:00:02',
        ip: '172.16.70.1',
        rateBps: 25000000000,
        driver: 'ice',
      },
      usableNics: [
        {
          device: 'eth1',
          name: 'ens1f1',
          mac: '3c:ec:ef:00:00:03',
          ip: null,
          rateBps: 25000000000,
          driver: 'ice',
        },
        {
          device: 'eth0',
          name: 'ens1f0',
          mac: '3c:ec:ef:00:00:02',
          ip: '172.16.70.1',
          rateBps: 25000000000,
          driver: 'ice',
        },
      ],
      virtualization: true,
    });
  });

  it('takes an explicit cluster, the FQDN its document gives (else the domain), and reads virtualization off', () => {
    const doc = grappe1();
    doc.supported_job_types = { deploy: true, virtual: false };
    const facts = nodeFacts(doc, 'nancy', 'testbed.local', 'grappe-gpu');
    assert.equal(facts.cluster, 'grappe-gpu');
    // the document's primary NIC names the node; the domain is for documents that do not
    assert.equal(facts.fqdn, 'grappe-1.nancy.grid5000.fr');
    assert.equal(facts.virtualization, false);
    for (const a of doc.network_adapters) delete a.network_address;
    assert.equal(nodeFacts(doc, 'nancy', 'testbed.local').fqdn, 'grappe-1.nancy.testbed.local');
  });

  it('derives the cluster from the uid', () => {
    assert.equal(clusterOf('grappe-12'), 'grappe');
    assert.equal(clusterOf('my-cluster-3'), 'my-cluster');
    assert.equal(clusterOf('standalone'), 'standalone');
  });
});
