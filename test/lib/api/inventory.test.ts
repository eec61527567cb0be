import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  loadReferenceDir,
  nodeFqdn,
  siteVlans,
  synthesizeInventory,
  vlanType,
} from '../../../src/lib/api/inventory.js';
import { InputError } from '../../../src/lib/errors.js';
import { BAD_REFERENCE_DIR, REFERENCE_DIR } from './fixtures.js';

const NODE = 'data/grid5000/sites/nancy/clusters/grappe/nodes/grappe-1.json';

describe('loadReferenceDir', () => {
  it('reads sites, clusters and nodes, in natural order, keeping every field', async () => {
    const inv = await loadReferenceDir(REFERENCE_DIR);
    assert.equal(inv.domain, 'grid5000.fr');
    assert.deepEqual([...inv.sites.keys()], ['nancy', 'rennes']);
    const nancy = inv.sites.get('nancy')!;
    assert.deepEqual([...nancy.clusters.keys()], ['graffiti', 'grappe']);
    assert.deepEqual(
      [...nancy.clusters.get('grappe')!.nodes.keys()],
      ['grappe-1', 'grappe-2', 'grappe-3', 'grappe-4'],
    );
    assert.equal(inv.sites.get('rennes')!.clusters.get('paravance')!.nodes.size, 3);
    const onDisk = JSON.parse(await readFile(join(REFERENCE_DIR, NODE), 'utf8'));
    assert.deepEqual(nancy.clusters.get('grappe')!.nodes.get('grappe-1'), onDisk);
    assert.equal(nancy.subnetPool, '10.144.0.0/14');
    assert.equal(inv.sites.get('rennes')!.subnetPool, '10.156.0.0/14');
  });

  it('derives VLANs from the numeric kavlans keys, typed by id', async () => {
    const inv = await loadReferenceDir(REFERENCE_DIR);
    const vlans = inv.sites.get('nancy')!.vlans;
    assert.deepEqual(
      vlans.map((v) => `${v.uid}:${v.type}`),
      [
        '1:kavlan-local',
        '2:kavlan-local',
        '3:kavlan-local',
        '4:kavlan',
        '5:kavlan',
        '6:kavlan',
        '7:kavlan',
        '8:kavlan',
        '9:kavlan',
        '16:kavlan-global',
      ],
    );
    assert.deepEqual(
      siteVlans({ uid: 'x', type: 'site' }).map((v) => v.uid),
      ['1', '2', '3', '4', '5', '6', '7', '8', '9'],
    );
    assert.deepEqual([0, 1, 3, 4, 9, 10, 21, 22].map(vlanType), [
      null,
      'kavlan-local',
      'kavlan-local',
      'kavlan',
      'kavlan',
      'kavlan-global',
      'kavlan-global',
      null,
    ]);
  });

  it('accepts the repository root, data/grid5000, or a folder holding sites/', async () => {
    const fromRoot = await loadReferenceDir(REFERENCE_DIR);
    const bare = await mkdtemp(join(tmpdir(), 'kb-sites-'));
    try {
      await cp(join(REFERENCE_DIR, 'data', 'grid5000', 'sites'), join(bare, 'sites'), { recursive: true });
      for (const dir of [join(REFERENCE_DIR, 'data', 'grid5000'), bare]) {
        const inv = await loadReferenceDir(dir, { domain: 'lab.test' });
        assert.equal(inv.domain, 'lab.test');
        assert.deepEqual([...inv.sites.keys()], [...fromRoot.sites.keys()]);
        assert.deepEqual(inv.sites.get('nancy')!.doc, fromRoot.sites.get('nancy')!.doc);
      }
    } finally {
      await rm(bare, { recursive: true, force: true });
    }
  });

  it('names the file and the field of a malformed node document', async () => {
    await assert.rejects(loadReferenceDir(BAD_REFERENCE_DIR), (err: Error) => {
      assert.ok(err instanceof InputError);
      assert.equal(err.message, `reference document ${NODE}: main_memory.ram_size must be a number`);
      return true;
    });
  });

  describe('rejects broken copies with one line naming file and field', () => {
    let dir: string;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'kb-ref-'));
    });
    after(() => rm(dir, { recursive: true, force: true }));

    const node = (edit: (doc: Record<string, unknown>) => void) => async (root: string) => {
      const file = join(root, NODE);
      const doc = JSON.parse(await readFile(file, 'utf8'));
      edit(doc);
      await writeFile(file, JSON.stringify(doc));
    };
    const cases: { name: string; breakIt: (root: string) => Promise<void>; message: RegExp }[] = [
      {
        name: 'not JSON',
        breakIt: (root) => writeFile(join(root, NODE), '{"uid": "grappe-1",'),
        message:
          /^reference document data\/grid5000\/sites\/nancy\/clusters\/grappe\/nodes\/grappe-1\.json: not valid JSON/,
      },
      {
        name: 'nb_cores missing',
        breakIt: node((d) => {
          delete (d.architecture as Record<string, unknown>).nb_cores;
        }),
        message: /grappe-1\.json: architecture\.nb_cores must be a number$/,
      },
      {
        name: 'adapter without device',
        breakIt: node((d) => {
          delete (d.network_adapters as Record<string, unknown>[])[2].device;
        }),
        message: /grappe-1\.json: network_adapters\[2\]\.device must be a non-empty string$/,
      },
      {
        name: 'storage_devices not an array',
        breakIt: node((d) => {
          d.storage_devices = {};
        }),
        message: /grappe-1\.json: storage_devices must be an array$/,
      },
      {
        name: 'uid differing from the file name',
        breakIt: node((d) => {
          d.uid = 'grappe-9';
        }),
        message: /grappe-1\.json: uid must be "grappe-1" \(the file name\), not "grappe-9"$/,
      },
      {
        name: 'site without uid',
        breakIt: async (root) => {
          const file = join(root, 'data/grid5000/sites/rennes/rennes.json');
          const doc = JSON.parse(await readFile(file, 'utf8'));
          delete doc.uid;
          await writeFile(file, JSON.stringify(doc));
        },
        message:
          /^reference document data\/grid5000\/sites\/rennes\/rennes\.json: uid must be a non-empty string$/,
      },
      {
        name: 'cluster document missing',
        breakIt: (root) => rm(join(root, 'data/grid5000/sites/rennes/clusters/paravance/paravance.json')),
        message: /sites\/rennes\/clusters\/paravance\/paravance\.json: file is missing$/,
      },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        const root = join(dir, c.name.replace(/\W+/g, '-'));
        await cp(REFERENCE_DIR, root, { recursive: true });
        await c.breakIt(root);
        await assert.rejects(loadReferenceDir(root), (err: Error) => {
          assert.ok(err instanceof InputError, String(err));
          assert.match(err.message, c.message);
          assert.ok(!err.message.includes('\n'));
          return true;
        });
      });
    }

    it('a missing folder', async () => {
      await assert.rejects(
        loadReferenceDir(join(dir, 'nowhere')),
        /reference directory .*nowhere does not exist/,
      );
    });
  });
});

describe('synthesizeInventory', () => {
  const spec = {
    domain: 'lab.test',
    sites: [
      {
        uid: 'alpha',
        g5ksubnet: { network: '10.200.0.0/14', gateway: '10.203.255.254' },
        frontendIp: '192.0.2.10',
        vlanIds: [4, 16],
        clusters: [
          {
            uid: 'c1',
            hardware: { procs: 1, cores: 4, threads: 8, ramBytes: 8 * 2 ** 30, diskBytes: 50 * 2 ** 30 },
            nodes: [
              { uid: 'c1-10', ip: '192.0.2.20', mac: '52:54:00:00:00:0a' },
              { uid: 'c1-2', ip: '192.0.2.12', mac: '52:54:00:00:00:02' },
            ],
          },
        ],
      },
    ],
  };

  it('produces reference-shaped documents', () => {
    const inv = synthesizeInventory(spec);
    const site = inv.sites.get('alpha')!;
    assert.equal(site.doc.frontend_ip, '192.0.2.10');
    assert.deepEqual(site.doc.g5ksubnet, spec.sites[0].g5ksubnet);
    assert.deepEqual(Object.keys(site.doc.kavlans!), ['4', '16']);
    assert.deepEqual(site.vlans, [
      { uid: '4', type: 'kavlan' },
      { uid: '16', type: 'kavlan-global' },
    ]);
    assert.equal(site.subnetPool, '10.200.0.0/14');
    const cluster = site.clusters.get('c1')!;
    assert.deepEqual([...cluster.nodes.keys()], ['c1-2', 'c1-10']);
    const n = cluster.nodes.get('c1-2')!;
    assert.deepEqual(n.architecture, { nb_procs: 1, nb_cores: 4, nb_threads: 8, platform_type: 'x86_64' });
    assert.equal(n.main_memory.ram_size, 8 * 2 ** 30);
    assert.equal(n.processor?.ht_capable, true);
    assert.equal(n.storage_devices[0].size, 50 * 2 ** 30);
    const [eth0, bmc] = n.network_adapters;
    assert.equal(eth0.mac, '52:54:00:00:00:02');
    assert.equal(eth0.ip, '192.0.2.12');
    assert.equal(eth0.network_address, nodeFqdn('c1-2', 'alpha', 'lab.test'));
    assert.equal(eth0.network_address, 'c1-2.alpha.lab.test');
    assert.equal(eth0.rate, 1_000_000_000);
    assert.ok(eth0.mountable && eth0.mounted && !eth0.management && eth0.interface === 'Ethernet');
    assert.ok(bmc.management && !bmc.mountable);
    assert.deepEqual(n.supported_job_types, {
      deploy: true,
      besteffort: true,
      virtual: 'ivt',
      max_walltime: 0,
    });
  });

  it('refuses duplicate nodes and bad pools', () => {
    const dup = structuredClone(spec);
    dup.sites[0].clusters[0].nodes[1].uid = 'c1-10';
    assert.throws(() => synthesizeInventory(dup), /site alpha: node c1-10 is described twice/);
    const bad = structuredClone(spec);
    bad.sites[0].g5ksubnet.network = '10.200.0.1/14';
    assert.throws(() => synthesizeInventory(bad), /site alpha: g5ksubnet .*host bits set/);
    const vlan = structuredClone(spec);
    vlan.sites[0].vlanIds = [30];
    assert.throws(() => synthesizeInventory(vlan), /VLAN id 30 is outside 1-21/);
  });
});
