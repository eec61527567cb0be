// An emulated VM as its agent sees it: the fields the agent's commands read and change (its
// identity, its environment, its emulated disk) and the power actions they can trigger.
import type { Channel } from '../channel.js';
import type { Fault } from '../model.js';

export interface EmulatedDisk {
  bytes: number;
  sha256: string | null;
  /** The deployed system's identity (`<env name> <version>`), set by `kb-agent postinstall`. */
  label?: string | null;
}

export interface ReceiveResult {
  port: number;
  bytes: number;
  sha256: string;
  forwardedTo: string | null;
  stored: boolean;
  ms: number;
}

/** What the agent needs from its VM. */
export interface AgentVm {
  name: string;
  mac: string;
  ip: string;
  /** 'deploy' (the deployment environment) or 'deployed' (the system on its disk). */
  env: string;
  /** What the next kexec boots: set by `kb-agent kexec`. */
  kexecTarget?: 'deploy' | 'deployed';
  boots: number;
  fault: Fault;
  disk: EmulatedDisk;
  receives: ReceiveResult[];
  /** When SSH came up (ms since the epoch). */
  bootedAt: number;
  /** Goes back through the boot exchange (after the SSH server is closed). */
  reboot(kind: 'reboot' | 'kexec'): void;
  /** The VM crashes: its SSH server goes away until a power action boots it again. */
  die?(reason: string): void;
  /** Runs a TakTuk engine (`taktuk -r` and its arguments) on this channel; absent: not installed. */
  startEngine?(args: string[], ch: Channel): void;
}

export const KERNEL_RELEASE = '6.1.0-kb-emulated';
