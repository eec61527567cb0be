import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { parseStdinReceive, receiveStdin } from '../../../../src/lib/emulated/agent/receive-stdin.js';
import type { Channel } from '../../../../src/lib/emulated/channel.js';
import type { Fault } from '../../../../src/lib/emulated/model.js';
import { fakeAgentVm } from '../../../helpers/agent-vm.js';

function vm(fault: Fault = { kind: 'none' }) {
  const died: string[] = [];
  const v = fakeAgentVm({ fault, die: (reason) => died.push(reason) });
  return { v, died };
}

function channel() {
  const input = new PassThrough();
  let exit!: (c: number) => void;
  const code = new Promise<number>((r) => {
    exit = r;
  });
  const ch: Channel & { out: string; err: string } = {
    out: '',
    err: '',
    stdin: input,
    write: (d) => {
      ch.out += d.toString();
      return true;
    },
    stderr: {
      write: (d) => {
        ch.err += d.toString();
        return true;
      },
    },
    exit: (c) => exit(c),
    end: () => {},
  };
  return { ch, input, code };
}

const data = Buffer.from('the image bytes '.repeat(1000));
const sha = createHash('sha256').update(data).digest('hex');

describe('kb-agent receive - (emulated)', () => {
  it('parses its options', () => {
    assert.deepEqual(parseStdinReceive(['--store']), { store: true, size: null, sha256: null });
    assert.deepEqual(
      parseStdinReceive(['--size', '10', '--sha256', sha.toUpperCase(), '--extract', '/mnt/dest']),
      {
        store: true,
        size: 10,
        sha256: sha,
      },
    );
    assert.equal(
      parseStdinReceive(['--write', '/tmp/f'])?.store,
      false,
      'a file outside /dev leaves the disk',
    );
    assert.equal(parseStdinReceive(['--write', '/dev/vda1'])?.store, true);
    for (const bad of [['--size', 'x'], ['--sha256', 'abc'], ['--write'], ['--nope']])
      assert.equal(parseStdinReceive(bad), null, bad.join(' '));
  });

  it('hashes and counts standard input, and keeps it on the disk', async () => {
    const { v } = vm();
    const { ch, input, code } = channel();
    receiveStdin(v, ['--size', String(data.length), '--sha256', sha, '--extract', '/mnt/dest'], ch);
    input.write(data.subarray(0, 100));
    input.end(data.subarray(100));
    assert.equal(await code, 0);
    const r = JSON.parse(ch.out);
    assert.deepEqual([r.bytes, r.sha256, r.ok, r.stored], [data.length, sha, true, true]);
    assert.deepEqual(v.disk, { bytes: data.length, sha256: sha });
    assert.equal(v.receives.length, 1);
  });

  it('fails on a short or altered stream, leaving the disk as it was', async () => {
    const { v } = vm();
    const { ch, input, code } = channel();
    receiveStdin(v, ['--size', String(data.length), '--sha256', sha, '--store'], ch);
    input.end(data.subarray(1));
    assert.equal(await code, 1);
    assert.equal(ch.err, `kb-agent receive: got ${data.length - 1} bytes, expected ${data.length}\n`);
    assert.deepEqual(v.disk, { bytes: 0, sha256: null });
  });

  it('a VM fated to die mid-transfer dies', async () => {
    const { v, died } = vm({ kind: 'die-mid-transfer', afterBytes: 500 });
    const { ch, input } = channel();
    receiveStdin(v, ['--store'], ch);
    input.end(data);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(died, ['injected fault: died while receiving']);
    assert.equal(ch.out, '');
  });

  it('refuses bad options with its usage', async () => {
    const { v } = vm();
    const { ch, code } = channel();
    receiveStdin(v, ['--size'], ch);
    assert.equal(await code, 2);
    assert.match(ch.err, /usage: kb-agent receive -/);
  });
});
