// Does a host answer SSH with the testbed key? A real SSH handshake and command, bounded.
import { sshTarget } from '../recipes/targets.js';
import type { KnownHosts } from '../ssh/known-hosts.js';

export interface SshProbe {
  host: string;
  ok: boolean;
  detail: string;
  ms: number;
}

export async function probeSsh(
  host: string,
  keyFile: string,
  timeoutMs = 10_000,
  knownHosts?: KnownHosts,
): Promise<SshProbe> {
  const t0 = Date.now();
  const r = await sshTarget(host, keyFile, knownHosts).exec('hostname; echo kb-ok', timeoutMs);
  const ok = r.code === 0 && r.stdout.includes('kb-ok');
  return {
    host,
    ok,
    detail: ok ? 'ssh ok' : (r.error ?? (r.stderr.trim() || `exit ${r.code}`)),
    ms: Date.now() - t0,
  };
}
