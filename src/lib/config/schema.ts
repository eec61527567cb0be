// The testbed config (testbed.yaml): what to reserve, how many VMs, which services where.
// Strict: an unknown key is an error, so a typo never silently falls back to a default.
import { z } from 'zod';

const positiveInt = (what: string) =>
  z
    .number({ error: `expected a whole number (${what})` })
    .int({ error: `expected a whole number (${what})` })
    .positive({ error: `must be at least 1 (${what})` });

const nonNegativeInt = (what: string) =>
  z
    .number({ error: `expected a whole number (${what})` })
    .int({ error: `expected a whole number (${what})` })
    .nonnegative({ error: `must be 0 or more (${what})` });

const cidr = z
  .string({ error: 'expected an IPv4 prefix such as 10.213.0.0/16' })
  .regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, { error: 'expected an IPv4 prefix such as 10.213.0.0/16' });

const name = z
  .string({ error: 'expected a name' })
  .regex(/^[a-z][a-z0-9-]{0,30}$/, { error: 'expected a lower-case name: letters, digits and dashes' });

const hardware = z.strictObject({
  procs: positiveInt('CPU sockets').default(1),
  cores: positiveInt('cores per host'),
  threads: positiveInt('hardware threads per host').optional(),
  ramMB: positiveInt('RAM per host in MB'),
  diskGB: positiveInt('disk per host in GB').default(100),
  nicGbps: positiveInt('primary NIC speed in Gbit/s').default(1),
});

// OAR queue and project: a job goes to one queue, so clusters of different queues need separate jobs.
const queue = z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,30}$/, { error: 'expected an OAR queue name such as default or production' });
const project = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, { error: 'expected an OAR project name' });

const cluster = z.strictObject({
  name,
  /** Overrides the testbed's queue for this cluster's hosts. */
  queue: queue.optional(),
  project: project.optional(),
  hosts: z.union([positiveInt('hosts in this cluster'), z.array(z.string().min(1)).min(1)], {
    error: 'expected a host count (at least 1) or a list of host names',
  }),
  properties: z.string().optional(),
  hardware: hardware.optional(),
});

const vmCount = z.union([positiveInt('VM count'), z.literal('auto')], {
  error: 'expected a VM count (at least 1) or "auto"',
});

const site = z.strictObject({
  name,
  subnet: cidr.optional(),
  vms: vmCount.optional(),
  serviceNodes: nonNegativeInt('service nodes in this site').optional(),
  clusters: z.array(cluster).min(1, { error: 'a site needs at least one cluster' }),
});

const flavour = z.strictObject({
  vcpus: positiveInt('virtual CPUs per VM').default(1),
  memoryMB: positiveInt('memory per VM in MB').default(914),
  diskMB: positiveInt('disk per VM in MB').default(2048),
});

const rate = (what: string) =>
  z
    .number({ error: `expected a probability between 0 and 1 (${what})` })
    .min(0, { error: `expected a probability between 0 and 1 (${what})` })
    .max(1, { error: `expected a probability between 0 and 1 (${what})` });

// The emulated runtime: its boot-time model's time scale, its seed, and injected faults.
const emulated = z.strictObject({
  seed: z.union([z.number(), z.string()], { error: 'expected a number or a string' }).default(1),
  timeScale: z
    .number({ error: 'expected a positive number (real ms per modelled ms)' })
    .positive({ error: 'expected a positive number (real ms per modelled ms)' })
    .max(1, { error: 'at most 1 (real time)' })
    .default(0.01),
  concurrency: positiveInt('VMs doing their DHCP/HTTP exchange at once, per site').default(64),
  faults: z
    .strictObject({
      'fail-boot': rate('share of VMs that never send DHCP').default(0),
      hang: rate('share of VMs that boot and never serve SSH').default(0),
      'die-mid-transfer': rate('share of VMs that die while receiving').default(0),
      'slow-link': rate('share of VMs on a slow link').default(0),
      transient: rate('share of boot faults that a power reset cures').default(0),
      reboot: rate('probability that a later boot (reboot, kexec) hangs, each boot drawn anew').default(0),
    })
    .prefault({}),
});

const vms = z.strictObject({
  count: vmCount.default('auto'),
  perHost: positiveInt('VMs per host').optional(),
  flavour: flavour.prefault({}),
  runtime: z.enum(['qemu', 'emulated'], { error: 'expected "qemu" or "emulated"' }).default('qemu'),
  perCore: positiveInt('VMs per core').default(2),
  maxPerHost: positiveInt('VMs per host at most').default(16),
  overheadMB: nonNegativeInt('memory overhead per VM in MB').default(64),
  hostReserveMB: nonNegativeInt('memory kept for the host in MB').default(1024),
  emulated: emulated.prefault({}),
});

const services = z.strictObject({
  backend: z.enum(['builtin', 'dnsmasq'], { error: 'expected "builtin" or "dnsmasq"' }).default('builtin'),
  roles: z
    .array(z.enum(['dhcp', 'tftp', 'http', 'dns'], { error: 'expected dhcp, tftp, http or dns' }))
    .min(1)
    .default(['dhcp', 'tftp', 'http', 'dns']),
  perSite: nonNegativeInt('service nodes per site').default(1),
});

const environment = z
  .strictObject({
    name,
    file: z.string().min(1).optional(),
    imageMB: positiveInt('image size in MB').optional(),
  })
  .refine((e) => e.file !== undefined || e.imageMB !== undefined, {
    error: 'an environment needs a description file or an image size (imageMB)',
  });

// How SSH reaches the nodes: "auto" goes through access.grid5000.fr when the controller reaches
// Grid'5000's public API with a login (it runs outside), direct otherwise; "none" is always direct.
const gateway = z.union(
  [
    z.enum(['auto', 'none']),
    z.strictObject({
      host: z
        .string({ error: 'expected a host name such as access.grid5000.fr' })
        .regex(/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/, {
          error: 'expected a host name such as access.grid5000.fr',
        }),
      /** Default: the Grid'5000 login (the API credentials'), else the login here. */
      user: z
        .string({ error: 'expected a login name' })
        .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/, { error: 'expected a login name' })
        .optional(),
      port: positiveInt('gateway SSH port')
        .max(65535, { error: 'expected a TCP port (1 to 65535)' })
        .default(22),
      /** Default: the user's own key (~/.ssh/id_ed25519, id_ecdsa or id_rsa, the first there). */
      identityFile: z.string({ error: 'expected the path of a private key' }).min(1).optional(),
    }),
  ],
  { error: 'expected "auto", "none" or a mapping with host (and user, port, identityFile)' },
);

export const testbedConfigSchema = z.strictObject({
  name,
  provider: z.enum(['local', 'g5k'], { error: 'expected "local" or "g5k"' }).default('local'),
  domain: z
    .string()
    .regex(/^[a-z0-9-]+(\.[a-z0-9-]+)+$/, { error: 'expected a DNS domain such as lab.test' })
    .optional(),
  api: z
    .strictObject({
      url: z.url({ error: 'expected an http(s) URL' }).optional(),
      credentials: z.enum(['auto', 'none'], { error: 'expected "auto" or "none"' }).default('auto'),
      user: z.string().min(1).optional(),
      retries: nonNegativeInt('retries of a failed API request').default(5),
    })
    .prefault({}),
  queue: queue.default('default'),
  project: project.optional(),
  walltime: z
    .string()
    .regex(/^\d+(:\d{2}){0,2}$/, { error: 'expected H[:MM[:SS]]' })
    .default('2:00:00'),
  network: z
    .strictObject({
      prefix: cidr.default('10.213.0.0/16'),
    })
    .prefault({}),
  vlan: z
    .strictObject({
      type: z
        .enum(['kavlan-local', 'kavlan', 'kavlan-global', 'none'], {
          error: 'expected kavlan-local, kavlan, kavlan-global or none',
        })
        .default('kavlan'),
    })
    .prefault({}),
  // provider g5k: the Kadeploy environment every reserved machine is reinstalled with, and how
  // many more deployments a machine that came back KO gets before it counts as lost.
  reinstall: z
    .strictObject({
      environment: z
        .string()
        .regex(/^\S+$/, { error: 'expected an environment name (name or name@user) or its URL' })
        .default('debian12-min'),
      redeploys: nonNegativeInt('deployments again of a machine that came back KO').default(2),
    })
    .prefault({}),
  // provider local: `twin` (the default) starts a twin of the sites (`testbed api -c` on this
  // config) and runs the g5k pipeline against it over its API and SSH; `direct` builds the
  // machines and services itself, with emulated hosts played by one process per site, for
  // hundreds of hosts (the twin runs an sshd, a copy of this package and a group per VM host).
  local: z
    .strictObject({
      via: z.enum(['direct', 'twin'], { error: 'expected "direct" or "twin"' }).default('twin'),
    })
    .prefault({}),
  sites: z.array(site).min(1, { error: 'a testbed needs at least one site' }),
  vms: vms.prefault({}),
  services: services.prefault({}),
  environments: z.array(environment).default([]),
  ssh: z
    .strictObject({
      key: z.string().min(1).default('auto'),
      gateway: gateway.default('auto'),
    })
    .prefault({}),
});

export type TestbedConfig = z.infer<typeof testbedConfigSchema>;
export type SiteConfig = TestbedConfig['sites'][number];
export type ClusterConfig = SiteConfig['clusters'][number];
export type HardwareConfig = NonNullable<ClusterConfig['hardware']>;
export type VmConfig = TestbedConfig['vms'];
export type GatewayConfig = TestbedConfig['ssh']['gateway'];
