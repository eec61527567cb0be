// The testbed config the emulated CLI tests share: two sites (nancy/grappe, rennes/paravance) of
// 4-core 16 GB hosts, emulated VMs, the test's own name, domain and /16 prefix; the local provider's
// direct path (test/cli/twin-emulated.test.ts runs emulated VMs through a twin).
export interface EmulatedConfigShape {
  name: string;
  domain: string;
  /** The first two octets, e.g. '10.229'. */
  prefix: string;
  /** Hosts and service nodes of nancy, then rennes; 4 hosts and 1 service node each unless given. */
  sites?: [{ hosts: number; serviceNodes: number }, { hosts: number; serviceNodes: number }];
  vms: number;
  /** The `vms.emulated` mapping, flow style, e.g. `{ seed: 1, faults: { hang: 0.02 } }`. */
  emulated: string;
}

export function emulatedConfig(c: EmulatedConfigShape): string {
  const [nancy, rennes] = c.sites ?? [
    { hosts: 4, serviceNodes: 1 },
    { hosts: 4, serviceNodes: 1 },
  ];
  return `name: ${c.name}
provider: local
local: { via: direct }
domain: ${c.domain}
network:
  prefix: ${c.prefix}.0.0/16
sites:
  - name: nancy
    serviceNodes: ${nancy.serviceNodes}
    clusters:
      - { name: grappe, hosts: ${nancy.hosts}, hardware: { cores: 4, ramMB: 16384, diskGB: 20 } }
  - name: rennes
    serviceNodes: ${rennes.serviceNodes}
    clusters:
      - { name: paravance, hosts: ${rennes.hosts}, hardware: { cores: 4, ramMB: 16384, diskGB: 20 } }
vms:
  count: ${c.vms}
  runtime: emulated
  emulated: ${c.emulated}
`;
}
