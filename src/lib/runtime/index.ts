// The runtime registry: the VM runtime a testbed's config names, as its implementation. The only
// place that reads the runtime's name; everything else asks the runtime (runtime.ts) instead.
import type { TestbedConfig } from '../config/schema.js';
import { emulatedRuntime } from './emulated/index.js';
import { qemuRuntime } from './qemu/index.js';
import type { RuntimeName, VmRuntime } from './runtime.js';

export type { PowerAction, PowerOutcome, RuntimeTuning, VmHosts, VmRuntime } from './runtime.js';

const runtimes: Record<RuntimeName, (config: TestbedConfig) => VmRuntime> = {
  qemu: qemuRuntime,
  emulated: emulatedRuntime,
};

export function runtimeFor(config: TestbedConfig): VmRuntime {
  return runtimes[config.vms.runtime](config);
}
