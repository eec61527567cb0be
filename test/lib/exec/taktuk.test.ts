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
  parseTaktukStatus,
  sshConnector,
  taktukArgs,
  taktukExec,
  taktukInputArgs,
} from '../../../src/lib/exec/taktuk.js';
import type { ExecTarget } from '../../../src/lib/exec/types.js';

const targets: ExecTarget[] = [
  { name: 'n-1', ip: '10.0.0.1' },
  { name: 'n-2', ip: '10.0.0.2' },
  { name: 'n-3', ip: '10.0.0.3' },
  { name: 'n-4', ip: '10.0.0.4' },
];

// TakTuk 3.7.7's default templates, as it printed them here: `$host-$rank: $command ($pid): $type >
// $line` for output/error/status (the status being the raw wait status), and `$host: $peer ($pid):
// $type > $line` for connector/state lines about the peer being deployed.
const FIXTURE = [
  '10.0.0.1-1: uname -r (4242): output > 6.1.0-kb',
  '10.0.0.2-3: uname -r (5151): output > 6.1.0-kb',
  '10.0.0.1-1: uname -r (4242): status > Exited with status 0',
  '10.0.0.3-2: uname -r (1717): error > uname: cannot do it',
  '10.0.0.3-2: uname -r (1717): error > second line (7): error > not a tag',
  '10.0.0.3-2: uname -r (1717): status > Exited with status 512',
  'vm: 10.0.0.4 (3131): connector > ssh: connect to host 10.0.0.4 port 22: Connection refused',
  'vm: 10.0.0.4 (3131): state > Connection failed',
  '10.0.0.2-3: uname -r (5151): status > Exited with status 0',
  'Warning: some unrelated line',
  '',
].join('\n');

describe('taktuk command line', () => {
  it('builds a broadcast exec, self-propagating when asked', () => {
    const args = taktukArgs(targets.slice(0, 2), 'uname -r', {
      connector: 'ssh -o BatchMode=yes -l root',
      window: 8,
      connectTimeoutS: 5,
      propagate: true,
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

  it('feeds a file to every command through the tree, then closes their input', () => {
    const args = taktukInputArgs(targets.slice(0, 1), 'kb-agent receive - --store', '/tmp/img', {
      connector: 'ssh',
    });
    assert.deepEqual(args, [
      '-c',
      'ssh',
      '-m',
      '10.0.0.1',
      'broadcast',
      'exec',
      '[',
      'kb-agent receive - --store',
      ']',
      ';',
      'broadcast',
      'input',
      'file',
      '[',
      '/tmp/img',
      ']',
      ';',
      'broadcast',
      'input',
      'close',
    ]);
    assert.throws(() => taktukInputArgs(targets, 'cat', '/tmp/a ] b', { connector: 'ssh' }), InputError);
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
    assert.equal(lines[6].host, 'vm');
    assert.equal(lines[6].rank, null);
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
    assert.equal(c.code, 2, 'wait status 512 is exit code 2');
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

describe('taktuk status', () => {
  it('decodes the raw wait status it prints', () => {
    assert.deepEqual(parseTaktukStatus('Exited with status 0'), { code: 0 });
    assert.deepEqual(parseTaktukStatus('Exited with status 768'), { code: 3 });
    assert.deepEqual(parseTaktukStatus('Exited with status 9'), { error: 'killed by signal 9' });
    assert.deepEqual(parseTaktukStatus('3'), { error: 'unparsed status: 3' });
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

// The installed TakTuk (debian-packages.sh installs it) with a connector that starts each engine
// on this machine instead of over SSH: its real output, read back per node, no network involved.
describe('the real taktuk, engines started locally', () => {
  let dir: string;
  let connector: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kb-taktuk-real-'));
    connector = join(dir, 'connector');
    // called as `connector <peer> <command>`: the peer "dead" cannot be reached; the engine gets
    // a clean environment, as over SSH (the root's TAKTUK_* settings would leak in otherwise)
    await writeFile(
      connector,
      [
        '#!/bin/sh',
        'peer=$1; shift $(($# - 1))',
        '[ "$peer" = dead ] && { echo "ssh: connect to host dead port 22: Connection refused" >&2; exit 255; }',
        // "slow" takes longer than TakTuk's -t the first time it is connected, as a loaded machine does
        `[ "$peer" = slow ] && [ ! -e ${dir}/slow-once ] && { : > ${dir}/slow-once; sleep 5; }`,
        'exec env -i PATH="$PATH" /bin/sh -c "$1"',
        '',
      ].join('\n'),
    );
    await chmod(connector, 0o755);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('reports output, error and exit code per node, and the unreachable one', async () => {
    assert.ok(findTaktuk(), 'taktuk is installed (recipes/install/debian-packages.sh)');
    const nodes: ExecTarget[] = [
      { name: 'a', ip: 'alpha' },
      { name: 'b', ip: 'beta' },
      { name: 'd', ip: 'dead' },
    ];
    const r = await taktukExec(nodes, 'echo "out $TAKTUK_HOSTNAME"; echo err >&2; exit 3', {
      privateKey: 'unused',
      connector,
      timeoutMs: 30_000,
    });
    const [a, b, d] = r.results;
    assert.deepEqual([a.code, a.stdout, a.stderr], [3, 'out alpha\n', 'err\n']);
    assert.deepEqual([b.code, b.stdout], [3, 'out beta\n']);
    assert.equal(d.code, null);
    assert.equal(d.error, 'unreachable: Connection failed');
    assert.match(d.stderr, /Connection refused/);
    assert.deepEqual([r.stats.failed, r.stats.errors], [2, 1]);
  });

  it('runs again on a node whose connector outlived -t, and only there', async () => {
    const nodes: ExecTarget[] = [
      { name: 'a', ip: 'alpha' },
      { name: 's', ip: 'slow' },
    ];
    // -t is 1 s plus 0.1 s a node (2 s here): the first run's connector to "slow" times out
    const r = await taktukExec(nodes, 'echo "on $TAKTUK_HOSTNAME"', {
      privateKey: 'unused',
      connector,
      connectTimeoutMs: 1_000,
      timeoutMs: 30_000,
    });
    const [a, s] = r.results;
    assert.deepEqual([a.code, a.stdout, a.attempts], [0, 'on alpha\n', undefined]);
    assert.deepEqual([s.code, s.stdout, s.attempts], [0, 'on slow\n', 2]);
    assert.deepEqual([r.stats.ok, r.stats.retried], [2, 1]);
  });
});
