import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import {
  type NodeCommands,
  parseEngineStart,
  startNodeCommands,
} from '../../../../src/lib/emulated/agent/node-commands.js';
import { type Channel, done } from '../../../../src/lib/emulated/channel.js';
import { shellWords } from '../../../../src/lib/shell.js';

describe('engine start lines', () => {
  const words: [string, string[] | null][] = [
    ['a b  c', ['a', 'b', 'c']],
    [`-L '10.0.0.1'`, ['-L', '10.0.0.1']],
    [`x "a \\"b\\" c" 'd e'f`, ['x', 'a "b" c', 'd ef']],
    [`''`, ['']],
    [`'open`, null],
    ['a; b', null],
    ['a $HOME', null],
  ];
  for (const [line, want] of words)
    it(`splits ${JSON.stringify(line)}`, () => assert.deepEqual(shellWords(line), want));

  it('knows what a TakTuk connector asks for', () => {
    assert.deepEqual(parseEngineStart(`exec /usr/bin/taktuk -r   -L '10.9.0.4'`), ['-r', '-L', '10.9.0.4']);
    assert.deepEqual(parseEngineStart(`exec taktuk -r -n -L 'a'`), ['-r', '-n', '-L', 'a']);
    // self-propagation needs perl on the node
    assert.equal(parseEngineStart('echo abc;exec perl -- - -r -L x'), null);
    assert.equal(parseEngineStart('exec /usr/bin/taktuk -m x'), null);
    assert.equal(parseEngineStart('exec /usr/bin/perl -r'), null);
    assert.equal(parseEngineStart('hostname'), null);
  });
});

function collect(): Channel & { out: string; err: string; code: Promise<number>; input: PassThrough } {
  const input = new PassThrough();
  let exit!: (c: number) => void;
  const code = new Promise<number>((r) => {
    exit = r;
  });
  const ch = {
    out: '',
    err: '',
    code,
    input,
    stdin: input,
    write: (d: string | Buffer) => {
      ch.out += d.toString();
      return true;
    },
    stderr: {
      write: (d: string | Buffer) => {
        ch.err += d.toString();
        return true;
      },
    },
    exit: (c: number) => exit(c),
    end: () => {},
  };
  return ch;
}

function runShim(file: string, args: string[], env: NodeJS.ProcessEnv, input?: Buffer) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const p = spawn(file, args, { env });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => {
      stdout += d;
    });
    p.stderr.on('data', (d) => {
      stderr += d;
    });
    p.on('close', (code) => resolve({ code, stdout, stderr }));
    p.stdin.end(input);
  });
}

describe('emulated VM commands for real processes', () => {
  let base: string;
  let dir: string;
  let nc: NodeCommands;
  // the VM's interpreter, as its SSH server would run it
  const run = (vm: string, command: string, ch: Channel) => {
    if (vm === 'down') return false;
    if (command === 'hostname') done(ch, 0, `${vm}\n`);
    else if (command === 'kb-agent count') {
      let n = 0;
      ch.stdin?.on('data', (d: Buffer) => {
        n += d.length;
      });
      ch.stdin?.on('end', () => done(ch, 0, `${n}\n`, 'counted\n'));
    } else done(ch, 127, '', `${command}: not found\n`);
    return true;
  };
  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'kb-nodecmd-'));
    dir = join(base, 'site.commands');
    // /bin/sh stands for the engine: it runs its commands by name with the PATH it is given
    nc = await startNodeCommands(dir, '/bin/sh', run);
  });
  after(async () => {
    await nc.close();
    await rm(base, { recursive: true, force: true });
  });

  it('a shim runs its command on the VM it is told', async () => {
    const env = { KB_NODE: 'vm-1', KB_NODE_SOCKET: nc.socketPath };
    assert.deepEqual(await runShim(join(nc.binDir, 'hostname'), [], env), {
      code: 0,
      stdout: 'vm-1\n',
      stderr: '',
    });
  });

  it('relays standard input, output, error and the exit code', async () => {
    const env = { KB_NODE: 'vm-1', KB_NODE_SOCKET: nc.socketPath };
    const data = Buffer.alloc(3 << 20, 7);
    assert.deepEqual(await runShim(join(nc.binDir, 'kb-agent'), ['count'], env, data), {
      code: 0,
      stdout: `${3 << 20}\n`,
      stderr: 'counted\n',
    });
    const r = await runShim(join(nc.binDir, 'cat'), ['/etc/passwd'], env);
    assert.deepEqual(r, { code: 127, stdout: '', stderr: 'cat /etc/passwd: not found\n' });
  });

  it('says so when the VM is not up', async () => {
    const r = await runShim(join(nc.binDir, 'hostname'), [], {
      KB_NODE: 'down',
      KB_NODE_SOCKET: nc.socketPath,
    });
    assert.equal(r.code, 255);
    assert.equal(r.stderr, 'kb-node: down: this VM is not up\n');
  });

  it('an engine finds only the VM commands, ssh and sh on its PATH', async () => {
    const ch = collect();
    nc.startEngine('vm-2', ['-c', 'hostname; kb-agent count; ls /'], ch);
    ch.input.end('abcd');
    assert.equal(await ch.code, 127, 'ls is not a command of the VM');
    assert.equal(ch.out, 'vm-2\n4\n');
    assert.match(ch.err, /counted\n.*ls: not found/s);
    assert.equal(nc.engines(), 0);
  });

  it('close stops the engines and removes its directory', async () => {
    const other = await startNodeCommands(join(base, 'other'), '/bin/sh', run);
    const ch = collect();
    other.startEngine('vm-3', ['-c', 'read x'], ch);
    assert.equal(other.engines(), 1);
    await other.close();
    assert.ok((await ch.code) > 128, 'killed');
    assert.equal(existsSync(join(base, 'other')), false);
  });
});
