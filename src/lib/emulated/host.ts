// An emulated host: an SSH server on the host's own address that answers the host-side commands
// kabootstrap sends to a VM host — which VMs it runs and their state, and power on/off/reset —
// as `kb-host` subcommands, plus the few shell words the probes use (hostname, echo, true).
import type ssh2 from 'ssh2';
import { shellWords } from '../shell.js';
import { type Channel, done } from './channel.js';
import { type SshServerHandle, serveSsh } from './ssh.js';

export interface EmulatedHostSpec {
  /** The host's FQDN. */
  name: string;
  ip: string;
}

export type PowerAction = 'on' | 'off' | 'reset';

export interface VmStatus {
  name: string;
  mac: string;
  state: string;
  /** Why a failed or hung VM is stuck, as its console would tell. */
  reason: string | null;
  boots: number;
  env: string;
}

/** What a host needs from the group running its VMs. */
export interface HostControl {
  status(names: string[]): VmStatus[];
  power(action: PowerAction, names: string[]): void;
}

const usage = 'usage: kb-host status [VM...] | kb-host power on|off|reset [VM...]';

/** One shell-like command line: `;`- and `&&`-separated simple commands. */
export function runHostCommand(
  host: EmulatedHostSpec,
  vmNames: string[],
  control: HostControl,
  line: string,
): { code: number; stdout: string; stderr: string } {
  let stdout = '';
  for (const part of line.split(/;|&&/)) {
    // VM names come quoted, as for a real host's sh
    const argv = shellWords(part.trim());
    if (!argv) return { code: 2, stdout, stderr: `kb-host (emulated host): only simple commands: ${part}\n` };
    if (argv.length === 0) continue;
    const r = simple(host, vmNames, control, argv);
    stdout += r.stdout;
    if (r.code !== 0) return { ...r, stdout };
  }
  return { code: 0, stdout, stderr: '' };
}

function simple(
  host: EmulatedHostSpec,
  vmNames: string[],
  control: HostControl,
  argv: string[],
): { code: number; stdout: string; stderr: string } {
  const ok = (stdout = '') => ({ code: 0, stdout, stderr: '' });
  const fail = (stderr: string, code = 1) => ({ code, stdout: '', stderr: `${stderr}\n` });
  if (argv[0] === 'true') return ok();
  if (argv[0] === 'hostname') return ok(`${host.name}\n`);
  if (argv[0] === 'echo') return ok(`${argv.slice(1).join(' ')}\n`);
  if (argv[0] !== 'kb-host') return fail(`kb-host (emulated host): ${argv[0]}: command not found`, 127);
  const [sub, ...rest] = argv.slice(1);
  const targets = (names: string[]) => {
    const unknown = names.find((n) => !vmNames.includes(n));
    if (unknown) throw new Error(`kb-host: VM ${unknown} does not run on ${host.name}`);
    return names.length ? names : vmNames;
  };
  try {
    if (sub === 'status') {
      return ok(`${JSON.stringify({ host: host.name, vms: control.status(targets(rest)) })}\n`);
    }
    if (sub === 'power' && (rest[0] === 'on' || rest[0] === 'off' || rest[0] === 'reset')) {
      const names = targets(rest.slice(1));
      control.power(rest[0], names);
      return ok(`${JSON.stringify({ host: host.name, power: rest[0], vms: names })}\n`);
    }
  } catch (e) {
    return fail((e as Error).message);
  }
  return fail(`kb-host: ${usage}`, 2);
}

export function startHostServer(
  host: EmulatedHostSpec,
  vmNames: string[],
  control: HostControl,
  keys: { hostKey: string; authorized: ssh2.ParsedKey; port?: number },
): Promise<SshServerHandle> {
  return serveSsh(host.ip, keys, (command: string, ch: Channel) => {
    const r = runHostCommand(host, vmNames, control, command);
    done(ch, r.code, r.stdout, r.stderr);
  });
}
