// An emulated VM as the agent sees it (src/lib/emulated/agent/vm.ts AgentVm), up in the deployment
// environment with an empty disk, for tests that drive the agent's commands without a group.
import type { AgentVm } from '../../src/lib/emulated/agent/vm.js';

export function fakeAgentVm(fields: Partial<AgentVm> = {}): AgentVm {
  return {
    name: 'vm-1',
    mac: '02:00:00:00:00:01',
    ip: '10.0.0.2',
    env: 'deploy',
    boots: 1,
    fault: { kind: 'none' },
    disk: { bytes: 0, sha256: null },
    receives: [],
    bootedAt: Date.now(),
    reboot: () => {},
    ...fields,
  };
}
