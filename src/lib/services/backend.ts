// The backend every protocol handler asks: which node is this MAC or IP, and what does it boot.
// Like smee's backend interface, so handlers never read the plan themselves.
import type { BootProfile, EnvBoot, NodeRecord, ServiceNodeConfig } from './config.js';

export interface Backend {
  getByMac(mac: string): NodeRecord | null;
  getByIp(ip: string): NodeRecord | null;
  /**
   * Switch what a node boots next (deployment environment, local disk, or its deployed system
   * through an environment's kernel: `env`, which needs `envBoot`). False for an unknown MAC.
   */
  setProfile(mac: string, profile: BootProfile, envBoot?: EnvBoot): boolean;
}

/** Normalises 00-16-3E-0A-00-02, 0016.3e0a.0002 or 00:16:3e:0a:00:02 to colon lower-case. */
export function normalizeMac(mac: string): string | null {
  const hex = mac.toLowerCase().replace(/[^0-9a-f]/g, '');
  if (hex.length !== 12) return null;
  return hex.match(/../g)!.join(':');
}

export function staticBackend(config: Pick<ServiceNodeConfig, 'nodes'>): Backend {
  const byMac = new Map<string, NodeRecord>();
  const byIp = new Map<string, NodeRecord>();
  for (const n of config.nodes) {
    const rec = { ...n };
    byMac.set(rec.mac, rec);
    byIp.set(rec.ip, rec);
  }
  return {
    getByMac: (mac) => {
      const m = normalizeMac(mac);
      return m ? (byMac.get(m) ?? null) : null;
    },
    getByIp: (ip) => byIp.get(ip) ?? null,
    setProfile: (mac, profile, envBoot) => {
      const m = normalizeMac(mac);
      const rec = m ? byMac.get(m) : undefined;
      if (!rec) return false;
      if (profile === 'env' && !envBoot && !rec.envBoot) {
        throw new Error(`node ${rec.mac}: the env profile needs a kernel, initrd and command line`);
      }
      rec.profile = profile;
      if (envBoot) rec.envBoot = { ...envBoot };
      return true;
    },
  };
}
