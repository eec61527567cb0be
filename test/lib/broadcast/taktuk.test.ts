import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nodeReport, receiverCommand } from '../../../src/lib/broadcast/taktuk.js';
import type { NodeExecResult } from '../../../src/lib/exec/types.js';

const source = { size: 1234, sha256: 'ab'.repeat(32) };
const result = (r: Partial<NodeExecResult>): NodeExecResult => ({
  node: 'vm-1',
  ip: '10.0.0.2',
  code: 0,
  stdout: '',
  stderr: '',
  ms: 50,
  ...r,
});

describe('taktuk broadcast', () => {
  it("runs the agent's receiver on standard input", () => {
    assert.equal(
      receiverCommand(source, { extract: '/mnt/dest' }),
      `kb-agent receive - --size 1234 --sha256 ${source.sha256} --extract /mnt/dest`,
    );
    assert.match(receiverCommand(source, { write: '/tmp/f' }), / --write \/tmp\/f$/);
    assert.match(receiverCommand(source, 'store'), / --store$/);
    // the command goes to each node's shell
    assert.throws(
      () => receiverCommand(source, { write: '/tmp/a b;reboot' }),
      /^InputError: broadcast: unsupported characters in target path \/tmp\/a b;reboot$/,
    );
  });

  const line = (o: object) => `${JSON.stringify(o)}\n`;
  const cases: [string, Partial<NodeExecResult>, { ok: boolean; error?: RegExp }][] = [
    ['verified', { stdout: line({ bytes: 1234, sha256: source.sha256, ok: true }) }, { ok: true }],
    [
      'a mismatch the agent reported',
      {
        code: 1,
        stdout: line({ bytes: 1200, sha256: 'cd'.repeat(32) }),
        stderr: 'kb-agent receive: got 1200 bytes\n',
      },
      { ok: false, error: /^kb-agent receive: got 1200 bytes$/ },
    ],
    [
      'exit 0 with the wrong hash',
      { stdout: line({ bytes: 1234, sha256: 'cd'.repeat(32) }) },
      { ok: false, error: /^got 1234 bytes, sha256 cdcd/ },
    ],
    [
      'unreachable',
      { code: null, error: 'unreachable: Connection failed', stderr: 'ssh: refused\n' },
      { ok: false, error: /^unreachable: Connection failed$/ },
    ],
    ['no output, a status', { code: 137 }, { ok: false, error: /^receiver exited with status 137$/ }],
  ];
  for (const [name, r, want] of cases)
    it(`reads a node's outcome: ${name}`, () => {
      const rep = nodeReport(result(r), source);
      assert.equal(rep.ok, want.ok);
      if (want.error) assert.match(rep.error ?? '', want.error);
      else assert.equal(rep.error, undefined);
    });
});
