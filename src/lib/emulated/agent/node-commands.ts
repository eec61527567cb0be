// Real processes on emulated VMs: a TakTuk connector that reaches an emulated VM asks it to run
// `taktuk -r`, and the VM runs the installed taktuk for real (one engine process per VM reached).
// The engine starts its commands by name, and the PATH it is given holds only small shims that
// send the command back to this group over a unix socket, where the VM's own interpreter runs it:
// `hostname` answers with the VM's name and `kb-agent receive -` stores what TakTuk's tree feeds
// it, just as they do over SSH. Only the engine itself, ssh (its connector to further VMs) and
// the shell are this machine's programs; a command given by absolute path would be too.
import { type ChildProcess, spawn } from 'node:child_process';
import { chmod, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { shellWords, sq } from '../../shell.js';
import type { Channel } from '../channel.js';

/** What a shim may be called: the commands the emulated interpreter knows (see interpreter.ts). */
export const NODE_COMMANDS = ['hostname', 'uname', 'cat', 'true', 'sync', 'reboot', 'kb-agent'] as const;

/**
 * The arguments of a TakTuk engine start as a connector sends it (`exec /usr/bin/taktuk -r ...
 * -L 'peer'`), or null for anything else. Self-propagation (`-s`) instead sends
 * `echo ...;exec perl -- - -r`: emulated VMs have no perl, so that is not an engine start here.
 */
export function parseEngineStart(command: string): string[] | null {
  const words = shellWords(command.trim());
  if (!words || words.length < 3 || words[0] !== 'exec') return null;
  if (!/(^|\/)taktuk$/.test(words[1]) || words[2] !== '-r') return null;
  return words.slice(2);
}

// One request per connection: `<vm> <argv...>` URI-escaped and space-separated on one line, then
// standard input; the answer is frames of a type byte (o stdout, e stderr, x exit code, i: send
// standard input), a 32-bit length and the data. Input is read only once asked for, as a command
// that never reads it leaves it to the next one of a shell.
const SHIM = `#!/usr/bin/perl
# kabootstrap: a command of an emulated VM (see src/lib/emulated/agent/node-commands.ts). It asks the
# VM's group to run it, relaying standard input, output, error and the exit code.
use strict;
use warnings;
use IO::Socket::UNIX;
use IO::Select;
use File::Basename qw(basename);

my $sock = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $ENV{KB_NODE_SOCKET} // '')
  or do { print STDERR "kb-node: cannot reach the emulated VM: $!\\n"; exit 126 };
my @words = ($ENV{KB_NODE} // '', basename($0), @ARGV);
s/([^A-Za-z0-9_.\\/-])/sprintf('%%%02X', ord($1))/ge for @words;
sub put_all { my ($fh, $data) = @_; while (length $data) { my $n = syswrite($fh, $data); return 0 unless defined $n; substr($data, 0, $n) = ''; } 1 }
put_all($sock, join(' ', @words) . "\\n") or exit 126;
my $sel = IO::Select->new($sock);
my $buf = '';
while (1) {
  for my $fh ($sel->can_read) {
    if (fileno($fh) == fileno($sock)) {
      my $n = sysread($sock, my $chunk, 65536);
      exit 255 unless $n;
      $buf .= $chunk;
      while (length($buf) >= 5) {
        my ($type, $len) = unpack('a N', $buf);
        last if length($buf) < 5 + $len;
        my $data = substr($buf, 5, $len);
        substr($buf, 0, 5 + $len) = '';
        if ($type eq 'o') { put_all(\\*STDOUT, $data) }
        elsif ($type eq 'e') { put_all(\\*STDERR, $data) }
        elsif ($type eq 'x') { exit($data + 0) }
        elsif ($type eq 'i') { $sel->add(\\*STDIN) }
      }
    } else {
      my $n = sysread(STDIN, my $chunk, 65536);
      if ($n) { put_all($sock, $chunk) or exit 255 }
      else { $sel->remove(\\*STDIN); shutdown($sock, 1) }
    }
  }
}
`;

export interface NodeCommands {
  /** The engines' PATH: the shims, ssh and sh. */
  binDir: string;
  socketPath: string;
  /** Starts a TakTuk engine for `vm` with these arguments on the SSH channel `ch`. */
  startEngine(vm: string, args: string[], ch: Channel): void;
  /** Engines running now. */
  engines(): number;
  close(): Promise<void>;
}

/**
 * Sets up `dir` (shims and socket) and serves the shims' requests with `run`, which runs one
 * command line of VM `vm` on a channel as its SSH server would (false: no such VM is up).
 */
export async function startNodeCommands(
  dir: string,
  taktuk: string,
  run: (vm: string, command: string, ch: Channel) => boolean,
): Promise<NodeCommands> {
  const binDir = join(dir, 'bin');
  const socketPath = join(dir, 'nodes.sock');
  await rm(dir, { recursive: true, force: true });
  await mkdir(binDir, { recursive: true });
  const shim = join(binDir, 'kb-node');
  await writeFile(shim, SHIM);
  await chmod(shim, 0o755);
  for (const name of NODE_COMMANDS) await symlink('kb-node', join(binDir, name));
  // the connector to further VMs and the shell TakTuk starts commands with
  await symlink('/usr/bin/ssh', join(binDir, 'ssh'));
  await symlink('/bin/sh', join(binDir, 'sh'));

  const sockets = new Set<Socket>();
  const server: Server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    let head = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      const nl = head.indexOf(10);
      if (nl < 0) {
        if (head.length > 65536) sock.destroy();
        return;
      }
      sock.off('data', onData);
      let words: string[];
      try {
        words = head.subarray(0, nl).toString('latin1').split(' ').map(decodeURIComponent);
      } catch {
        return sock.destroy();
      }
      const stdin = new PassThrough();
      stdin.write(head.subarray(nl + 1));
      sock.pipe(stdin);
      const frame = (type: string, data: string | Buffer) => {
        const body = typeof data === 'string' ? Buffer.from(data) : data;
        const h = Buffer.alloc(5);
        h.write(type, 0, 'latin1');
        h.writeUInt32BE(body.length, 1);
        return sock.write(Buffer.concat([h, body]));
      };
      let asked = false;
      const ch: Channel = {
        write: (data) => frame('o', data),
        stderr: { write: (data) => frame('e', data) },
        exit: (code) => frame('x', String(code)),
        end: () => sock.end(),
        get stdin() {
          if (!asked) frame('i', '');
          asked = true;
          return stdin;
        },
        onClose: (fn) => sock.once('close', fn),
      };
      const [vm, ...argv] = words;
      // the shell already took the words apart: those it had to unquote are quoted again, so
      // the interpreter gets each one whole
      const line = argv.map((w) => (/^[\w./:=,@%+-]+$/.test(w) ? w : sq(w))).join(' ');
      if (!run(vm, line, ch)) {
        ch.stderr.write(`kb-node: ${vm}: this VM is not up\n`);
        ch.exit(255);
        ch.end();
      }
    };
    sock.on('data', onData);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });

  const engines = new Set<ChildProcess>();
  const startEngine = (vm: string, args: string[], ch: Channel) => {
    // TakTuk's own settings travel on its connections, never through our environment
    const child = spawn(taktuk, args, {
      cwd: dir,
      env: { PATH: binDir, KB_NODE: vm, KB_NODE_SOCKET: socketPath, HOME: dir, LANG: 'C' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    engines.add(child);
    child.stdout.on('data', (d: Buffer) => ch.write(d));
    child.stderr.on('data', (d: Buffer) => ch.stderr.write(d));
    child.stdin.on('error', () => {});
    child.on('error', (e) => {
      ch.stderr.write(`kb-node: ${taktuk}: ${e.message}\n`);
    });
    ch.stdin?.pipe(child.stdin);
    // the connection going away ends the engine, as sshd would hang up on it
    ch.onClose?.(() => child.kill());
    child.on('close', (code, signal) => {
      engines.delete(child);
      ch.exit(code ?? 128 + (signal === 'SIGKILL' ? 9 : 15));
      ch.end();
    });
  };

  return {
    binDir,
    socketPath,
    startEngine,
    engines: () => engines.size,
    close: async () => {
      for (const e of engines) e.kill();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
