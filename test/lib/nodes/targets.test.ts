// Which nodes a deployment acts on, and the reboot window flag: bad input names its cause.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseWindow } from '../../../src/lib/deploy/deployment.js';
import { InputError } from '../../../src/lib/errors.js';
import { type DeployNode, parseNodeList, selectNodes } from '../../../src/lib/nodes/targets.js';

const node = (name: string, site = 'nancy'): DeployNode => ({
  name,
  fqdn: `${name}.${site}.test`,
  ip: '10.0.0.1',
  mac: '00:16:3e:00:00:01',
  site,
  host: `h.${site}.test`,
  hostIp: '10.0.0.10',
  serviceUrl: null,
});
const all = [node('vm-1'), node('vm-2'), node('vm-3', 'rennes')];

describe('deployment targets', () => {
  it('reads node files with comments and blank lines', () => {
    assert.deepEqual(parseNodeList('vm-1\n# a comment\n\n  vm-3.rennes.test  # trailing\n'), [
      'vm-1',
      'vm-3.rennes.test',
    ]);
  });

  it('selects by short name or FQDN, once each, in file order', () => {
    const got = selectNodes(all, ['vm-3.rennes.test', 'vm-1', 'vm-1.nancy.test'], '-f n.txt', 'tb');
    assert.deepEqual(
      got.map((n) => n.name),
      ['vm-3', 'vm-1'],
    );
    assert.equal(selectNodes(all, null, '-f', 'tb'), all);
  });

  it('refuses a node outside the testbed, naming it and the file', () => {
    assert.throws(
      () => selectNodes(all, ['vm-1', 'vm-9'], '-f n.txt', 'tb'),
      (e: Error) => e instanceof InputError && e.message === '-f n.txt: node vm-9 is not in testbed tb',
    );
    assert.throws(() => selectNodes(all, [], '-f empty.txt', 'tb'), /names no node/);
  });

  it('parses reboot windows as SIZE:SECONDS', () => {
    assert.deepEqual(parseWindow('50:10', '--reboot-window'), { size: 50, sleepMs: 10_000 });
    assert.deepEqual(parseWindow('8:0.5', '--reboot-window'), { size: 8, sleepMs: 500 });
    for (const bad of ['50', '0:10', 'a:b', '50:-1'])
      assert.throws(() => parseWindow(bad, '--reboot-window'), /--reboot-window: ".*" is not SIZE:SECONDS/);
    assert.throws(() => parseWindow('5:7200', '--reboot-window'), /more than an hour/);
  });
});
