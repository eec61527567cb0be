// The emulated runtime: Node processes play thousands of VMs (src/lib/emulated/), booting by the
// boot model at its time scale — on the local twin one per site, playing its hosts too; on hosts
// reached over SSH one per host. Its VM-hosts phase starts
// those processes and checks every host answers SSH (hosts.ts); its VMs phase powers the VMs on
// and waits for them (boot.ts). Power goes through `kb-host power` on the host (power.ts).
import type { TestbedConfig } from '../../config/schema.js';
import { defaultModel } from '../../emulated/model.js';
import { readControlSecret } from '../../state/control-secret.js';
import type { RuntimeContext, VmHosts, VmRuntime } from '../runtime.js';
import { bootAll } from './boot.js';
import { startEmulatedHosts } from './hosts.js';
import { emulatedPower } from './power.js';

/**
 * Emulated VMs share a few processes: a 64 MiB ring each would be gigabytes per process, so they
 * keep 2 MiB (a successor that fell further behind is resumed from the source instead).
 */
export const emulatedRingBytes = 2 * 2 ** 20;

export function emulatedRuntime(config: TestbedConfig): VmRuntime {
  const scale = config.vms.emulated.timeScale;
  return {
    name: 'emulated',
    tuning: {
      timeScale: scale,
      rebootGraceMs: 200,
      probeIntervalMs: 250,
      firstProbeDelayMs: 300,
      // emulated boots run at the model's time scale; the floor covers queueing on this machine
      // (measured: ≈13 ms of boot queueing per VM at 1000 VMs); n: the VMs rebooting at once
      rebootTimeoutMs: (n, standardMs) => Math.max(30_000, 30 * n, standardMs * scale),
      broadcast: {
        resumable: true,
        // thousands of emulated nodes share two cores: a busy one is slow, not dead
        stallMs: 10_000,
        ringBytes: emulatedRingBytes,
      },
      lowerBoundMs: (imageBytes) => lowerBoundMs(imageBytes, scale),
    },
    localTwin: { hostLayout: 'per-site' },
    // The host group is this package's own process (shipped like a service node's); its emulated
    // hosts' addresses go on the host with ip, and TakTuk runs on them.
    hostPackages: ['iproute2', 'procps', 'taktuk'],
    prepareHosts,
    power: emulatedPower,
  };
}

/** The fastest the model allows: every node's quickest reboot and kexec, and the image at 1 GB/s. */
function lowerBoundMs(imageBytes: number, timeScale: number): number {
  const k = defaultModel.kinds;
  return (k.reboot.minMs + k.kexec.minMs) * timeScale + (imageBytes / 1e9) * 1000;
}

async function prepareHosts(ctx: RuntimeContext): Promise<VmHosts> {
  const hosts = await startEmulatedHosts(ctx);
  const { store, state, plan, progress, logger } = ctx;
  const controlSecret = await readControlSecret(store.layout.controlSecret);
  return {
    accel: null,
    emulatedHosts: hosts.count,
    launchVms: ({ retries }) => {
      const slowest = Math.max(defaultModel.kinds.pxe.maxMs, defaultModel.kinds.reboot.maxMs);
      // Queueing for DHCP and HTTP at thousands of VMs comes on top of the modelled boot.
      const bootTimeoutMs = slowest * state.config.vms.emulated.timeScale + 60_000;
      return bootAll(
        state,
        plan,
        hosts.sessions,
        { privateKey: hosts.privateKey, knownHosts: hosts.knownHosts },
        controlSecret,
        bootTimeoutMs,
        retries,
        progress,
        logger,
      );
    },
    close() {
      for (const s of hosts.sessions.values()) s.close();
    },
  };
}
