// The commented starter file written by `kabootstrap config init`.

export function starterConfig(provider: 'local' | 'g5k', name: string): string {
  const local = provider === 'local';
  return `# kabootstrap testbed config. Every key is checked: a typo is an error, never a silent default.
name: ${name}                 # state goes to .kabootstrap/${name}/
provider: ${provider}             # local: emulated sites on this machine | g5k: a Grid'5000-style API
# domain: ${name}.test        # DNS domain of the testbed (default: <name>.test)
${
  local
    ? `network:
  prefix: 10.213.0.0/16       # all local testbed addresses; must not overlap a route on this machine
# local:
#   via: twin                 # twin (default): start a twin of these sites and run the g5k pipeline
#                             # against it (reinstall, KaVLAN, SSH) | direct: build it all here, with
#                             # emulated hosts played per site (for hundreds of hosts)`
    : `api:
  url: https://api.grid5000.fr/stable
  credentials: auto           # auto: G5K_USER/G5K_PASSWORD, else ~/.grid5000.yml | none (inside the testbed)
  retries: 5                  # retries of a request failing with 5xx, 429 or a connection error`
}
walltime: "2:00:00"           # reservation length, H[:MM[:SS]]
vlan:
  type: kavlan                # kavlan-local | kavlan | kavlan-global | none${
    local
      ? ''
      : `
reinstall:                    # every reserved machine is reinstalled (a deploy job), then put in the VLAN
  environment: debian12-min   # Kadeploy environment: name, name@user or a description URL
  redeploys: 2                # deployments again of a machine that came back KO; then it is lost`
  }
sites:
  - name: nancy
    # vms: 8                  # VMs wanted at this site (default: vms.count, split by capacity)
    # serviceNodes: 1         # default: services.perSite
    clusters:
      - name: grappe
        hosts: 3              # how many hosts may be reserved, or a list of host names${
          local
            ? `
        hardware: { cores: 2, threads: 2, ramMB: 4096, diskGB: 20 }   # the emulated hosts`
            : `
        # hardware is read from the API's reference documents`
        }
vms:
  count: auto                 # a number, or auto: as many as the hosts carry
  # perHost: 2                # overrides the capacity policy below
  runtime: qemu              # qemu | emulated (for plans bigger than the machine)
  flavour: { vcpus: 1, memoryMB: 914, diskMB: 2048 }
  perCore: 2                  # at most this many vCPUs per core
  maxPerHost: 16
  overheadMB: 64              # per VM, on top of its memory
  hostReserveMB: 1024         # kept for the host itself
  # emulated:                 # runtime: emulated only
  #   seed: 1                 # boot times and faults are drawn from it
  #   timeScale: 0.01         # real ms per modelled ms
  #   faults: { fail-boot: 0.01, hang: 0, transient: 0.5 }
services:
  backend: builtin            # builtin | dnsmasq
  roles: [dhcp, tftp, http, dns]
  perSite: 1                  # service nodes per site (taken from the reserved hosts)
environments: []              # e.g. - { name: tiny, file: envs/tiny.yaml }
`;
}
