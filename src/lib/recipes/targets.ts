// Targets a recipe runs on: a local network namespace (ip netns exec), or a host over SSH.
import { readFile } from 'node:fs/promises';
import { execa } from 'execa';
import type { KnownHosts } from '../ssh/known-hosts.js';
import { execOnce } from '../ssh/pool.js';
import type { Target } from './recipe.js';

export function nsTarget(ns: string): Target {
  return {
    name: ns,
    async exec(command, timeoutMs) {
      const start = Date.now();
      const r = await execa('ip', ['netns', 'exec', ns, 'sh', '-c', command], {
        reject: false,
        timeout: timeoutMs,
      });
      return { code: r.exitCode ?? null, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - start };
    },
  };
}

/**
 * One SSH connection per command: recipes and probes run few commands, far apart. With
 * `knownHosts`, the host's key is checked against the testbed's pinned keys.
 */
export function sshTarget(host: string, keyFile: string, knownHosts?: KnownHosts): Target {
  return {
    name: `root@${host}`,
    async exec(command, timeoutMs) {
      let privateKey: Buffer;
      try {
        privateKey = await readFile(keyFile);
      } catch (e) {
        return { code: null, stdout: '', stderr: '', error: `cannot read the key: ${(e as Error).message}` };
      }
      return execOnce(
        { host, privateKey, knownHosts, timeoutMs: Math.min(timeoutMs, 20_000) },
        command,
        timeoutMs,
      );
    },
  };
}
