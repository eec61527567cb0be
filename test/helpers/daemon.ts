// Starts the service daemon inside a namespace and waits for its ready line.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServiceNodeInput } from '../../src/lib/services/config.js';
import { root } from './cli.js';

export interface RunningDaemon {
  ports: Record<string, number>;
  /** The daemon's own pid (`ip netns exec` execs it in place). */
  pid: number;
  stderr(): string;
  /** True while the process is alive (a crash shows here). */
  alive(): boolean;
  stop(): Promise<void>;
}

export async function daemonInNs(ns: string, config: ServiceNodeInput): Promise<RunningDaemon> {
  const dir = await mkdtemp(join(tmpdir(), 'kb-daemon-'));
  const file = join(dir, 'service.json');
  await writeFile(file, JSON.stringify(config));
  const child = spawn(
    'ip',
    ['netns', 'exec', ns, process.execPath, '--import', 'tsx', 'test/helpers/daemon-main.ts', file],
    {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let err = '';
  let out = '';
  let exited = false;
  child.stderr.on('data', (d) => {
    err += d;
  });
  child.on('exit', () => {
    exited = true;
  });
  const ports = await new Promise<Record<string, number>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon not ready after 20 s: ${err}`)), 20_000);
    child.stdout.on('data', (d) => {
      out += d;
      const line = out.split('\n')[0];
      if (out.includes('\n')) {
        clearTimeout(timer);
        resolve(JSON.parse(line).ports);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited ${code}: ${err}`));
    });
  });
  return {
    ports,
    pid: child.pid!,
    stderr: () => err,
    alive: () => !exited,
    stop: async () => {
      await new Promise<void>((resolve) => {
        if (exited) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        // time to stop what it runs (radvd): a daemon killed outright leaves it behind, and a
        // loaded machine (CI) took more than 3 s to shut one down
        setTimeout(() => child.kill('SIGKILL'), 15_000).unref();
      });
      await rm(dir, { recursive: true, force: true });
    },
  };
}
