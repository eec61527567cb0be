// Network namespaces for interop tests: real clients (busybox udhcpc/tftp, dig, curl) talk to
// our servers across a veth pair, and nothing leaves the namespaces this test made.
import { execFileSync, spawn, spawnSync } from 'node:child_process';

export const isRoot = process.getuid?.() === 0;
export const skipUnlessRoot = isRoot ? false : 'needs root (network namespaces)';

/** Skip reason when a tool is missing, so a test says why instead of failing obscurely. */
export function needTools(...tools: string[]): string | false {
  if (!isRoot) return 'needs root (network namespaces)';
  const missing = tools.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  return missing.length ? `needs ${missing.join(', ')} (recipes/install/debian-packages.sh)` : false;
}

function ip(...args: string[]) {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export interface NsPair {
  server: string;
  client: string;
  serverIp: string;
  clientIp: string;
  clientIf: string;
  serverIf: string;
  /** Runs a command in a namespace and returns its output (throws on failure). */
  exec(ns: string, cmd: string[], opts?: { timeoutMs?: number; input?: string }): string;
  /** Starts a long-running command in a namespace. */
  spawn(ns: string, cmd: string[]): ReturnType<typeof spawn>;
  destroy(): void;
}

let counter = 0;

/**
 * Two namespaces joined by a veth pair in `subnet` (a /24 given as its first three octets):
 * server at .1, client at .2. Names are unique per process so parallel test files do not clash.
 */
export function nsPair(tag: string, prefix24 = '10.213.250'): NsPair {
  const id = `${process.pid % 10000}${counter++}`;
  const server = `kbt-${tag}-s${id}`;
  const client = `kbt-${tag}-c${id}`;
  const serverIf = `kvs${id}`;
  const clientIf = `kvc${id}`;
  ip('netns', 'add', server);
  ip('netns', 'add', client);
  const destroy = () => {
    spawnSync('ip', ['netns', 'del', server]);
    spawnSync('ip', ['netns', 'del', client]);
  };
  try {
    ip('link', 'add', serverIf, 'netns', server, 'type', 'veth', 'peer', 'name', clientIf, 'netns', client);
    ip('-n', server, 'addr', 'add', `${prefix24}.1/24`, 'dev', serverIf);
    ip('-n', client, 'addr', 'add', `${prefix24}.2/24`, 'dev', clientIf);
    for (const [ns, dev] of [
      [server, serverIf],
      [client, clientIf],
    ]) {
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      ip('-n', ns, 'link', 'set', dev, 'up');
    }
  } catch (e) {
    destroy();
    throw e;
  }
  return {
    server,
    client,
    serverIp: `${prefix24}.1`,
    clientIp: `${prefix24}.2`,
    serverIf,
    clientIf,
    exec: (ns, cmd, opts = {}) =>
      execFileSync('ip', ['netns', 'exec', ns, ...cmd], {
        timeout: opts.timeoutMs ?? 30_000,
        input: opts.input,
        encoding: 'utf8',
        stdio: ['pipe', 'pipe', 'pipe'],
      }),
    spawn: (ns, cmd) => spawn('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] }),
    destroy,
  };
}
