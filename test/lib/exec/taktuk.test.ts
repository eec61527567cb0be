import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InputError } from '../../../src/lib/errors.js';
import {
  findTaktuk,
  parseTaktukLines,
  parseTaktukOutput,
  sshConnector,
  taktukArgs,
  taktukExec,
} from '../../../src/lib/exec/taktuk.js';
import type { ExecTarget } from '../../../src/lib/exec/types.js';

const targets: ExecTarget[] = [
  { name: 'n-1', ip: '10.0.0.1' },
  { name: 'n-2', ip: '10.0.0.2' },
  { name: 'n-3', ip: '10.0.0.3' },
  { name: 'n-4', ip: '10.0.0.4' },
];

// Written from TakTuk's documented default templates: `$host-$rank: $command ($pid): $type > $line`
// for output/error/status, and connector/state lines about the peer being deployed.
const FIXTURE = [
  '10.0.0.1-1: uname -r (4242): output > 6.1.0-kb',
  '10.0.0.2-3: uname -r (5151): output > 6.1.0-kb',
  '10.0.0.1-1: uname -r (4242): status > 0',
  '10.0.0.3-2: uname -r (1717): error > uname: cannot do it',
  '10.0.0.3-2: uname -r (1717): error > second line (7): error > not a tag',
  '10.0.0.3-2: uname -r (1717): status > 2',
  'localhost-0: 10.0.0.4 (3131): connector > ssh: connect to host 10.0.0.4 port 22: Connection refused',
  'localhost-0: 10.0.0.4 (3131): state > Connection failed',
  '10.0.0.2-3: uname -r (5151): status > 0',
  'Warning: some unrelated line',
  '',
].join('\n');

describe('taktuk command line', () => {
  it('builds a self-propagating broadcast exec', () => {
    const args = taktukArgs(targets.slice(0, 2), 'uname -r', {
      connector: 'ssh -o BatchMode=yes -l root',
      window: 8,
      connectTimeoutS: 5,
    });
    assert.deepEqual(args, [
      '-s',
      '-c',
      'ssh -o BatchMode=yes -l root',
      '-w',
      '8',
      '-t',
      '5',
      '-m',
      '10.0.0.1',
      '-m',
      '10.0.0.2',
      'broadcast',
      'exec',
      '[',
      'uname -r',
      ']',
    ]);
  });

  it('refuses what taktuk would misread', () => {
    assert.throws(() => taktukArgs(targets, 'echo ] x', { connector: 'ssh' }), InputError);
    assert.throws(() => taktukArgs(targets, '  ', { connector: 'ssh' }), InputError);
    assert.throws(
      () => taktukArgs([{ name: 'a', ip: '1.2.3.4', port: 2222 }], 'true', { connector: 'ssh' }),
      InputError,
    );
    assert.throws(() => taktukArgs(targets, 'true', { connector: 'ssh', window: 0 }), InputError);
  });

  it('has a non-interactive ssh connector with the key', () => {
    const c = sshConnector('/tmp/k/id', 7_500);
    assert.match(c, /^ssh /);
    assert.match(c, /-o BatchMode=yes/);
    assert.match(c, /-o ConnectTimeout=8/);
    assert.match(c, /-i \/tmp\/k\/id$/);
  });
});

describe('taktuk output', () => {
  it('splits lines into host, rank, subject, pid, type and text', () => {
    const lines = parseTaktukLines(FIXTURE);
    assert.equal(lines.length, 9);
    assert.deepEqual(lines[0], {
      host: '10.0.0.1',
      rank: 1,
      subject: 'uname -r',
      pid: 4242,
      type: 'output',
      line: '6.1.0-kb',
    });
    // Only the first ` (pid): type > ` is the tag; the rest is the command's own text.
    assert.equal(lines[4].line, 'second line (7): error > not a tag');
    assert.equal(lines[6].host, 'localhost');
    assert.equal(lines[6].subject, '10.0.0.4');
  });

  it('keeps hyphens of host names before the rank', () => {
    const [l] = parseTaktukLines('node-12-7: hostname (99): output > node-12\n');
    assert.equal(l.host, 'node-12');
    assert.equal(l.rank, 7);
  });

  it('gives one result per target with stdout, stderr, status and failures', () => {
    const results = parseTaktukOutput(FIXTURE, [...targets, { name: 'n-5', ip: '10.0.0.5' }]);
    assert.equal(results.length, 5);
    const [a, b, c, d, e] = results;
    assert.deepEqual(
      results.map((r) => r.node),
      ['n-1', 'n-2', 'n-3', 'n-4', 'n-5'],
    );
    assert.equal(a.code, 0);
    assert.equal(a.stdout, '6.1.0-kb\n');
    assert.equal(b.code, 0);
    assert.equal(c.code, 2);
    assert.equal(c.stderr, 'uname: cannot do it\nsecond line (7): error > not a tag\n');
    assert.equal(d.code, null);
    assert.equal(d.error, 'unreachable: Connection failed');
    assert.match(d.stderr, /Connection refused/);
    assert.equal(e.code, null);
    assert.equal(e.error, 'not reported by taktuk');
  });

  it('without targets, lists the hosts taktuk named', () => {
    const results = parseTaktukOutput(FIXTURE);
    assert.deepEqual(
      results.map((r) => r.node),
      ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4'],
    );
  });
});

describe('finding taktuk', () => {
  let dir: string;
  let empty: string;
  const savedPath = process.env.PATH;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-taktuk-test-'));
    empty = await mkdtemp(join(tmpdir(), 'kb-taktuk-empty-'));
    await writeFile(join(dir, 'taktuk'), '#!/bin/sh\nexit 0\n');
    await chmod(join(dir, 'taktuk'), 0o755);
  });
  after(async () => {
    process.env.PATH = savedPath;
    await rm(dir, { recursive: true, force: true });
    await rm(empty, { recursive: true, force: true });
  });

  it('looks it up on PATH', () => {
    assert.equal(findTaktuk(`${empty}:${dir}`), join(dir, 'taktuk'));
    assert.equal(findTaktuk(empty), null);
    assert.equal(findTaktuk(''), null);
  });

  it('taktukExec says how to install it when absent', async () => {
    process.env.PATH = empty;
    await assert.rejects(taktukExec(targets, 'true', { privateKey: 'x' }), (e: unknown) => {
      assert.ok(e instanceof InputError);
      assert.equal(e.message, 'exec --method taktuk: taktuk is not installed (apt-get install taktuk)');
      return true;
    });
  });
});
