// What a service node serves: written by the controller from the plan, read by
// `kabootstrap service run --config FILE` (the builtin backend) or turned into a dnsmasq config.
import { z } from 'zod';
import { cmdlineSchema } from '../kernel-cmdline.js';

// The kernel command line's rules live below every layer that takes one (environments, profiles).
export { cmdlinePattern, cmdlineSchema, ipxeTextProblem } from '../kernel-cmdline.js';

// No leading zeros: some parsers read 010 as octal.
const octet = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const ipv4Text = `${octet}(\\.${octet}){3}`;
const ipv4 = z
  .string()
  .regex(new RegExp(`^${ipv4Text}$`), { error: 'expected an IPv4 address (four numbers from 0 to 255)' });
const subnet = z.string().regex(new RegExp(`^${ipv4Text}/(3[0-2]|[12]?\\d)$`), {
  error: 'expected an IPv4 subnet such as 10.0.0.0/24',
});
const mac = z
  .string()
  .regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/, { error: 'expected a lower-case MAC such as 00:16:3e:0a:00:02' });

/** A control secret: 32 random bytes or more, in hex (64 characters) or base64url (43). */
export const controlSecretPattern = /^[A-Za-z0-9_-]{43,}$/;

/**
 * What a node boots next: the deployment environment, its local disk (iPXE sanboot), or its
 * deployed system through that environment's own kernel and initrd served over HTTP (`env`).
 */
export const bootProfileSchema = z.enum(['deploy', 'local', 'env']);
export type BootProfile = z.infer<typeof bootProfileSchema>;

/**
 * Where an environment's boot files live under httpRoot, as the control endpoint stores them:
 * envs/<sha256 of the file itself>/kernel or initrd. Nothing else may be uploaded or env-booted.
 */
export const envFilePattern = /^envs\/[0-9a-f]{64}\/(kernel|initrd)$/;

const envFile = (what: 'kernel' | 'initrd') =>
  z.string({ error: `expected the ${what}'s path` }).regex(new RegExp(`^envs/[0-9a-f]{64}/${what}$`), {
    error: `expected envs/<sha256>/${what} (a file uploaded through PUT /files/envs/...)`,
  });

/** The `env` profile's boot: paths relative to httpRoot, and the kernel command line. */
export const envBootSchema = z.strictObject({
  kernel: envFile('kernel'),
  initrd: envFile('initrd').nullable().default(null),
  cmdline: cmdlineSchema,
});
export type EnvBoot = z.infer<typeof envBootSchema>;

export const serviceNodeConfigSchema = z.strictObject({
  /** The service node (a host FQDN from the plan). */
  name: z.string().min(1),
  site: z.string().min(1),
  domain: z.string().min(1),
  /** The service node's address in its VLAN: DHCP server id, next-server, HTTP/TFTP/DNS host. */
  ip: ipv4,
  /** Interface the service node's VLAN is on (used by the dnsmasq backend and radvd). */
  interface: z.string().min(1).default('eth0'),
  network: z.strictObject({
    subnet,
    gateway: ipv4,
    dns: z.array(ipv4).min(1),
  }),
  // Empty is allowed: with the dnsmasq backend the daemon may serve only its control endpoint.
  roles: z.array(z.enum(['dhcp', 'tftp', 'http', 'dns'])),
  /** Ports: the standard ones on a service node; tests on loopback pick free ones. */
  ports: z
    .strictObject({
      dhcp: z.number().int().min(0).default(67),
      tftp: z.number().int().min(0).default(69),
      http: z.number().int().min(0).default(80),
      dns: z.number().int().min(0).default(53),
      /** Per-MAC boot events (JSON lines / SSE) for the controller; 0 = any free port. */
      events: z.number().int().min(0).default(8067),
    })
    .prefault({}),
  /** Address the daemon binds its UDP/TCP sockets to (0.0.0.0 in a service node namespace). */
  bind: ipv4.default('0.0.0.0'),
  /** DHCP replies go to this broadcast address (the subnet's; 255.255.255.255 needs a default route). */
  broadcast: ipv4.optional(),
  tftpRoot: z.string().min(1),
  /**
   * How long TFTP waits for an ACK before resending, and how many resends it makes before giving
   * the transfer up (≈18 s of silence by default, ample for a slow firmware).
   */
  tftp: z
    .strictObject({
      timeoutMs: z.number().int().positive().default(3000),
      retries: z.number().int().positive().default(5),
    })
    .prefault({}),
  httpRoot: z.string().min(1),
  /**
   * Where the control endpoint stages an upload until it is whole, then renames it into httpRoot:
   * outside httpRoot and tftpRoot (never served), on httpRoot's filesystem. Default: httpRoot's
   * sibling `<httpRoot>.uploads`.
   */
  uploadDir: z.string().min(1).optional(),
  /** What a node boots in each profile; paths are relative to httpRoot. */
  boot: z.strictObject({
    deploy: z.strictObject({ kernel: z.string(), initrd: z.string(), cmdline: cmdlineSchema.default('') }),
  }),
  nodes: z
    .array(
      z
        .strictObject({
          mac,
          ip: ipv4,
          hostname: z.string().min(1),
          fqdn: z.string().min(1),
          profile: bootProfileSchema.default('deploy'),
          /** What the `env` profile boots (set with the profile through the control endpoint). */
          envBoot: envBootSchema.optional(),
        })
        .refine((n) => n.profile !== 'env' || n.envBoot !== undefined, {
          error: 'the env profile needs envBoot (its kernel, initrd and command line)',
          path: ['envBoot'],
        }),
    )
    // One MAC, one planned node: a second entry would never be served, or served the wrong address.
    .superRefine((nodes, ctx) => {
      const first = new Map<string, number>();
      nodes.forEach((n, i) => {
        const j = first.get(n.mac);
        if (j === undefined) first.set(n.mac, i);
        else ctx.addIssue({ code: 'custom', message: `duplicate of nodes[${j}]`, path: [i, 'mac'] });
      });
    }),
  /** A and PTR records served for the domain (hosts, service nodes, VMs). */
  dns: z
    .strictObject({
      records: z.array(z.strictObject({ name: z.string().min(1), ip: ipv4 })).default([]),
      /** Upstream resolvers for other names; empty = refuse them. */
      forward: z.array(ipv4).default([]),
    })
    .prefault({}),
  leaseSeconds: z.number().int().positive().default(3600),
  /**
   * IPv6 router advertisements on `interface`, by radvd, which the daemon runs and stops with
   * itself (services/ra/radvd.ts): bare ones, so that iPXE's IPv6 autoconfiguration ends at once
   * instead of soliciting for ≈16 s on every network boot. None when absent.
   */
  routerAdvertisements: z
    .strictObject({
      /** Where radvd's config and pid file go. */
      runDir: z.string().min(1),
    })
    .optional(),
  /**
   * The control endpoint's secret: every request but GET /health must carry
   * `Authorization: Bearer <secret>`. Absent in configs written before it existed: then anyone
   * who reaches the port is obeyed (the daemon warns).
   */
  control: z
    .strictObject({
      secret: z.string().regex(controlSecretPattern, {
        error: 'expected 32 random bytes or more, in hex or base64url (43 characters or more)',
      }),
    })
    .optional(),
  /** Largest file the control endpoint accepts (PUT /files/envs/...): 512 MiB. */
  uploadMaxBytes: z
    .number()
    .int()
    .positive()
    .default(512 * 1024 * 1024),
  /** Bytes all stored environment files (httpRoot/envs) may take together, uploads under way counted. */
  uploadQuotaBytes: z
    .number()
    .int()
    .positive()
    .default(4 * 1024 * 1024 * 1024),
  /** Uploads received at once; past it, 503 with Retry-After (the client waits and tries again). */
  uploadsAtOnce: z.number().int().positive().default(4),
});

export type ServiceNodeConfig = z.infer<typeof serviceNodeConfigSchema>;
export type ServiceNodeInput = z.input<typeof serviceNodeConfigSchema>;
export type NodeRecord = ServiceNodeConfig['nodes'][number];
