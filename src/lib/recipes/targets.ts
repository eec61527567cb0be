// Targets a recipe runs on: a local network namespace (ip netns exec), or a host over SSH.
import { execa } from 'execa';
import { openSsh } from '../runtime/ssh-session.js';
import type { Target } from './recipe.js';

export function nsTarget(ns: string): Target {
  return {
    name: ns,
    async exec(command, timeoutMs) {
      const r = await execa('ip', ['netns', 'exec', ns, 'sh', '-c', command], {
        reject: false,
        timeout: timeoutMs,
      });
      return { code: r.exitCode ?? null, stdout: r.stdout, stderr: r.stderr };
    },
  };
}

/** One SSH connection per command: recipes and probes run few commands, far apart. */
export function sshTarget(host: string, keyFile: string): Target {
  return {
    name: `root@${host}`,
    async exec(command, timeoutMs) {
      let session: Awaited<ReturnType<typeof openSsh>>;
      try {
        session = await openSsh(host, keyFile, Math.min(timeoutMs, 20_000));
      } catch (e) {
        return { code: null, stdout: '', stderr: (e as Error).message };
      }
      try {
        return await session.exec(command, timeoutMs);
      } finally {
        session.close();
      }
    },
  };
}
