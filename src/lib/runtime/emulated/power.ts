// Power control of emulated VMs, the one place it is done: `kb-host power` over SSH to their
// host (the emulated host's own command, src/lib/emulated/host.ts). Setup's boots and the
// runtime's power control (deploy's hard reboots, `kabootstrap reboot`) both run it.
import { sq } from '../../shell.js';
import type { CommandResult } from '../../ssh/result.js';
import type { SshSession } from '../../ssh/session.js';
import type { PowerAction, PowerHost, PowerOutcome } from '../runtime.js';

/** One `kb-host power` for the host's `vms`; a cycle is off then on (a reset may not clear a wedged VM). */
export function hostPowerCommand(
  session: SshSession,
  action: PowerAction,
  vms: readonly string[],
): Promise<CommandResult> {
  const names = vms.map(sq).join(' ');
  const cmd =
    action === 'cycle'
      ? `kb-host power off ${names} && kb-host power on ${names}`
      : `kb-host power ${action} ${names}`;
  return session.exec(cmd, 30_000);
}

/** The runtime's power control: every VM of the host succeeds or fails with the host's command. */
export async function emulatedPower(
  host: PowerHost,
  action: PowerAction,
  vms: readonly string[],
): Promise<Map<string, PowerOutcome>> {
  const r = await hostPowerCommand(host.session, action, vms);
  const outcome: PowerOutcome =
    r.code === 0
      ? { ok: true }
      : {
          ok: false,
          reason: `power ${action} on ${host.name}: ${r.error ?? (r.stderr.trim() || `exit ${r.code}`)}`,
        };
  return new Map(vms.map((vm) => [vm, outcome]));
}
