// One emulated VM's SSH server: the transport of ../ssh.ts on the VM's address, each exec request
// run by the agent's interpreter. The one place the two meet (neither imports the other).
import { type SshServerHandle, type SshServerOptions, serveSsh } from '../ssh.js';
import { runAgentCommand } from './interpreter.js';
import type { AgentVm } from './vm.js';

/** Starts the SSH server for one VM on ip:port. */
export function startSshServer(vm: AgentVm, opts: SshServerOptions): Promise<SshServerHandle> {
  return serveSsh(vm.ip, opts, (command, ch, ctx) => runAgentCommand(vm, command, ch, ctx));
}
