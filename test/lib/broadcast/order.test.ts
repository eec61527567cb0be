import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chainOrder, treeShape } from '../../../src/lib/broadcast/order.js';
import { InputError } from '../../../src/lib/errors.js';
import { naturalCompare } from '../../../src/lib/natural-order.js';

const node = (name: string, host: string, site: string) => ({
  name,
  ip: `10.0.0.${name.length}`,
  host,
  site,
});

describe('chainOrder', () => {
  it('sorts names naturally', () => {
    assert.deepEqual(['n-10', 'n-2', 'n-1', 'm-3'].sort(naturalCompare), ['m-3', 'n-1', 'n-2', 'n-10']);
    assert.ok(naturalCompare('a01', 'a1') !== 0);
  });

  it('keeps the VMs of a host and the hosts of a site together, one site after another', () => {
    const nodes = [
      node('vm-10', 'h2', 'lyon'),
      node('vm-1', 'h1', 'nancy'),
      node('vm-3', 'h10', 'lyon'),
      node('vm-2', 'h2', 'lyon'),
      node('vm-7', 'h1', 'nancy'),
      node('vm-4', 'h1', 'lyon'),
    ];
    const order = chainOrder(nodes).map((n) => `${n.site}/${n.host}/${n.name}`);
    assert.deepEqual(order, [
      'lyon/h1/vm-4',
      'lyon/h2/vm-2',
      'lyon/h2/vm-10',
      'lyon/h10/vm-3',
      'nancy/h1/vm-1',
      'nancy/h1/vm-7',
    ]);
    // one hop per host boundary, one per site boundary
    const ordered = chainOrder(nodes);
    const siteHops = ordered.slice(1).filter((n, i) => n.site !== ordered[i].site).length;
    assert.equal(siteHops, 1);
    // deterministic whatever the input order
    assert.deepEqual(chainOrder([...nodes].reverse()), ordered);
  });

  it('starts at the given site', () => {
    const nodes = [node('a', 'h', 'lyon'), node('b', 'h', 'nancy')];
    assert.deepEqual(
      chainOrder(nodes, { firstSite: 'nancy' }).map((n) => n.name),
      ['b', 'a'],
    );
  });

  it('refuses a node listed twice', () => {
    assert.throws(() => chainOrder([node('a', 'h', 's'), node('a', 'h', 's')]), InputError);
  });
});

describe('treeShape', () => {
  it('builds a k-ary tree in breadth-first order', () => {
    const t = treeShape(7, 2);
    assert.deepEqual(t.parent, [-1, 0, 0, 1, 1, 2, 2]);
    assert.deepEqual(t.children, [[1, 2], [3, 4], [5, 6], [], [], [], []]);
    assert.equal(t.depth, 3);
    const t3 = treeShape(5, 3);
    assert.deepEqual(t3.children[0], [1, 2, 3]);
    assert.deepEqual(t3.children[1], [4]);
    assert.equal(t3.depth, 3);
    assert.equal(treeShape(0, 2).depth, 0);
    assert.deepEqual(treeShape(3, 1).parent, [-1, 0, 1]);
  });

  it('refuses a bad arity or size', () => {
    assert.throws(() => treeShape(3, 0), InputError);
    assert.throws(() => treeShape(3, 1.5), InputError);
    assert.throws(() => treeShape(-1, 2), InputError);
  });
});
