import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig, parseConfigText } from '../../../src/lib/config/load.js';
import { InputError } from '../../../src/lib/errors.js';

const base = `name: t
sites:
  - name: nancy
    clusters:
      - { name: grappe, hosts: 2, hardware: { cores: 4, ramMB: 8192 } }
`;

describe('testbed config', () => {
  it('fills defaults', () => {
    const c = parseConfigText(base, 't.yaml');
    assert.equal(c.provider, 'local');
    assert.equal(c.vms.flavour.memoryMB, 914);
    assert.equal(c.vms.count, 'auto');
    assert.deepEqual(c.services.roles, ['dhcp', 'tftp', 'http', 'dns']);
    assert.equal(c.network.prefix, '10.213.0.0/16');
    assert.deepEqual(c.reinstall, { environment: 'debian12-min', redeploys: 2 });
  });

  it('loads the shipped recipes', async () => {
    for (const f of ['recipes/local-small.yaml', 'recipes/seed-4552.yaml', 'recipes/seed-4552-twin.yaml']) {
      const { config } = await loadConfig(f);
      assert.ok(config.sites.length > 0);
    }
    const builtin = await loadConfig();
    assert.equal(builtin.config.name, 'local-small');
    assert.match(builtin.source, /built-in default/);
  });

  const bad: [string, string, RegExp][] = [
    ['an unknown key', base + 'vmz: 3\n', /^config t\.yaml: vmz: unknown key$/],
    [
      'an unknown nested key',
      base.replace('hosts: 2,', 'hosts: 2, gpus: 1,'),
      /^config t\.yaml: sites\[0\]\.clusters\[0\]\.gpus: unknown key$/,
    ],
    [
      'a zero count',
      base.replace('hosts: 2', 'hosts: 0'),
      /^config t\.yaml: sites\[0\]\.clusters\[0\]\.hosts: /,
    ],
    [
      'a negative count',
      base + 'vms: { perHost: -2 }\n',
      /^config t\.yaml: vms\.perHost: must be at least 1 \(VMs per host\)$/,
    ],
    [
      'a negative memory',
      base + 'vms: { flavour: { memoryMB: -1 } }\n',
      /^config t\.yaml: vms\.flavour\.memoryMB: must be at least 1/,
    ],
    [
      'overlapping subnets',
      `name: t
sites:
  - { name: a, subnet: 10.213.16.0/20, clusters: [{ name: c, hosts: 2, hardware: { cores: 2, ramMB: 4096 } }] }
  - { name: b, subnet: 10.213.20.0/22, clusters: [{ name: d, hosts: 2, hardware: { cores: 2, ramMB: 4096 } }] }
`,
      /^config t\.yaml: sites\[1\]\.subnet: 10\.213\.20\.0\/22 overlaps sites\[0\]\.subnet \(10\.213\.16\.0\/20\)$/,
    ],
    [
      'a subnet with host bits',
      base.replace('  - name: nancy\n', '  - name: nancy\n    subnet: 10.213.16.1/20\n'),
      /sites\[0\]\.subnet: "10\.213\.16\.1\/20" has host bits set/,
    ],
    [
      'a subnet outside the prefix',
      base.replace('  - name: nancy\n', '  - name: nancy\n    subnet: 10.9.0.0/20\n'),
      /sites\[0\]\.subnet: 10\.9\.0\.0\/20 is outside network\.prefix 10\.213\.0\.0\/16/,
    ],
    [
      'a duplicate site',
      base + base.split('\n').slice(2).join('\n'),
      /sites\[1\]\.name: site "nancy" is listed twice/,
    ],
    [
      'a local cluster without hardware',
      base.replace(', hardware: { cores: 4, ramMB: 8192 }', ''),
      /sites\[0\]\.clusters\[0\]\.hardware: is required for the local provider/,
    ],
    ['g5k without an API URL', base + 'provider: g5k\n', /api\.url: is required for the g5k provider/],
    ['a wrong type', base + 'walltime: [1]\n', /^config t\.yaml: walltime: /],
    ['bad YAML', 'name: [t\n', /^config t\.yaml(:\d+)?: not valid YAML/],
    [
      'an alias bomb',
      `a: &a [x, x, x, x, x, x, x, x, x, x]\n${Array.from(
        { length: 8 },
        (_, i) =>
          `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10)
            .fill(`*${String.fromCharCode(97 + i)}`)
            .join(', ')}]`,
      ).join('\n')}\n`,
      /^config t\.yaml: not valid YAML: Excessive alias count/,
    ],
    ['a missing name', base.replace('name: t\n', ''), /^config t\.yaml: name: is required$/],
    [
      'a negative redeploy count',
      base + 'reinstall: { redeploys: -1 }\n',
      /^config t\.yaml: reinstall\.redeploys: must be 0 or more/,
    ],
    [
      'an environment with a space',
      base + 'reinstall: { environment: "a b" }\n',
      /reinstall\.environment: expected an environment name/,
    ],
  ];
  for (const [what, yaml, re] of bad) {
    it(`refuses ${what} with one line naming the field`, () => {
      assert.throws(
        () => parseConfigText(yaml, 't.yaml'),
        (e: unknown) => e instanceof InputError && re.test(e.message) && !e.message.includes('\n'),
      );
    });
  }

  it('names a missing file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kb-config-'));
    await assert.rejects(loadConfig(join(dir, 'nope.yaml')), /nope\.yaml: cannot read it \(no such file\)/);
    await writeFile(join(dir, 'list.yaml'), '- a\n- b\n');
    await assert.rejects(loadConfig(join(dir, 'list.yaml')), /expected a mapping/);
  });
});
