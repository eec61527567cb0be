import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  formatResources,
  parseResources,
  parseWalltime,
  ResourceSyntaxError,
} from '../../../src/lib/g5k/oar.js';

describe('OAR resource strings', () => {
  it('round-trips nodes, subnets, a kavlan and a walltime', () => {
    const text = "{cluster='grappe'}/nodes=4+slash_22=1+{type='kavlan-global'}/vlan=1,walltime=2:00:00";
    const req = parseResources(text);
    assert.deepEqual(req, {
      parts: [
        { kind: 'nodes', count: 4, filter: [{ key: 'cluster', values: ['grappe'] }] },
        { kind: 'subnet', prefixLength: 22, count: 1 },
        { kind: 'vlan', count: 1, filter: [{ key: 'type', values: ['kavlan-global'] }] },
      ],
      walltimeSeconds: 7200,
    });
    assert.equal(formatResources(req), text);
  });

  it('reads host lists and plain counts', () => {
    const req = parseResources("{host in ('a-1.x.fr','a-2.x.fr') and cluster='a'}/nodes=2+slash_18=1");
    assert.deepEqual(req.parts[0], {
      kind: 'nodes',
      count: 2,
      filter: [
        { key: 'host', values: ['a-1.x.fr', 'a-2.x.fr'] },
        { key: 'cluster', values: ['a'] },
      ],
    });
    assert.equal(req.walltimeSeconds, null);
    assert.equal(parseResources('nodes=3').parts[0].kind, 'nodes');
  });

  const bad: [string, RegExp][] = [
    ['', /empty/],
    ['nodes=0', /at least 1/],
    ['nodes=x', /whole number/],
    ['gpus=2', /unknown resource type "gpus"/],
    ['slash_8=1', /outside/],
    ['{cluster=grappe}/nodes=1', /cannot read resource property/],
    ['nodes=1,walltime=1:99', /over 59/],
  ];
  for (const [text, re] of bad) {
    it(`refuses ${JSON.stringify(text)}`, () => {
      assert.throws(
        () => parseResources(text),
        (e: unknown) => e instanceof ResourceSyntaxError && re.test(e.message),
      );
    });
  }

  it('parses walltimes', () => {
    assert.equal(parseWalltime('2'), 7200);
    assert.equal(parseWalltime('1:30'), 5400);
    assert.equal(parseWalltime('0:00:42'), 42);
  });
});
