// Where kabootstrap keeps its files, in one place: on the controller the state root
// (KABOOTSTRAP_HOME, default ./.kabootstrap), the environment registry under it, and per testbed
// its state, lock, control secret, SSH key pair, pinned host keys and sshd files, service node roots,
// env-boot cache, API state, deployment stats, emulated host groups, a twin's machines and an
// experiment's stage record; the experiments'
// reports and scaled images, which outlive their testbed; on VM hosts, the VMs' run directories and disks.
// Pure path arithmetic: nothing here touches the disk.
import { join, resolve } from 'node:path';

export function stateRoot(): string {
  return resolve(process.env.KABOOTSTRAP_HOME ?? '.kabootstrap');
}

export function testbedDir(name: string): string {
  return join(stateRoot(), name);
}

/** The environment registry and rights (user-level, shared by every testbed). */
export function envsDir(): string {
  return join(stateRoot(), 'envs');
}

/**
 * `experiment run`'s files that outlive a testbed's teardown: its reports and the scaled
 * environment images it builds (reused by the next run of the same size).
 */
export function experimentsDir(): string {
  return join(stateRoot(), 'experiments');
}

/** On a VM host (the local testbed's are this machine): per testbed, its VMs' run directories and tmpfs disks. */
export const hostRunRoot = '/run/kabootstrap';
export const hostDiskRoot = '/dev/shm/kabootstrap';

/**
 * On a service node installed over SSH (provider g5k): per testbed, the package it runs and, as on
 * the controller for a local one, each service node's directory under `services/`.
 */
export const serviceNodeRoot = '/var/lib/kabootstrap';

export function remoteServiceLayout(root: string, testbed: string) {
  const dir = join(root, testbed);
  return {
    dir,
    /** The package bundle, unpacked (testbed/service-bundle.ts). */
    packageDir: join(dir, 'package'),
    serviceNode: (host: string, site: string) => serviceNodeFilesIn(join(dir, 'services'), host, site),
  };
}

/** A service node's files under a services directory (the controller's, or a service node's own). */
function serviceNodeFilesIn(servicesDir: string, host: string, site: string): ServiceNodeFiles {
  const dir = join(servicesDir, `${host.split('.')[0]}-${site}`);
  const httpRoot = join(dir, 'http');
  const dnsmasqDir = join(dir, 'dnsmasq');
  return {
    dir,
    tftpRoot: join(dir, 'tftp'),
    httpRoot,
    uploadDir: join(dir, 'uploads'),
    deployKernel: join(httpRoot, ...deployKernelPath.split('/')),
    deployInitrd: join(httpRoot, ...deployInitrdPath.split('/')),
    config: join(dir, 'service.json'),
    log: join(dir, 'service.log'),
    pid: join(dir, 'service.pid'),
    dnsmasqDir,
    dnsmasqConf: join(dnsmasqDir, 'dnsmasq.conf'),
    dnsmasqLog: join(dnsmasqDir, 'dnsmasq.log'),
    dnsmasqPid: join(dnsmasqDir, 'dnsmasq.foreground.pid'),
    radvdDir: join(dir, 'radvd'),
  };
}

/** Under a service node's HTTP root (and so its URL path): the deployment environment's boot files. */
export const deployKernelPath = 'deploy/vmlinuz';
export const deployInitrdPath = 'deploy/initrd.img';

/** The testbed's SSH key pair and the files of the sshd every emulated host runs. */
export interface SshLayout {
  dir: string;
  /** The controller's private key every host and node accepts; its public half is `${clientKey}.pub`. */
  clientKey: string;
  clientPublicKey: string;
  hostKey: string;
  config: string;
  authorizedKeys: string;
  runDir: string;
  /** Per host namespace: the sshd's pid file and log. */
  pidFile(ns: string): string;
  logFile(ns: string): string;
  /** The home directory a host's SSH sessions see (empty at setup: no rc file of this machine). */
  homeDir(ns: string): string;
}

/** A site's twin (`testbed api -c`): the key it installs when told of none, and each machine's files. */
export interface TwinLayout {
  dir: string;
  /** Made when the twin is given no --key: its machines accept the public half until a deployment installs another. */
  clientKey: string;
  clientPublicKey: string;
  /** A machine's own files (host key, authorized keys, sshd config, pid, log, home): a reinstall wipes them. */
  machineDir(ns: string): string;
}

/** One service node's files: its served roots, upload staging, daemon config, log and pid, dnsmasq's and radvd's run dirs. */
export interface ServiceNodeFiles {
  dir: string;
  tftpRoot: string;
  httpRoot: string;
  /** Where uploads are staged until whole: beside httpRoot (same filesystem), never served. */
  uploadDir: string;
  /** The deployment environment's kernel and initrd, served as deployKernelPath/deployInitrdPath. */
  deployKernel: string;
  deployInitrd: string;
  config: string;
  log: string;
  pid: string;
  dnsmasqDir: string;
  dnsmasqConf: string;
  dnsmasqLog: string;
  dnsmasqPid: string;
  /** radvd's config and pid file (the daemon's IPv6 router advertisements). */
  radvdDir: string;
}

/** One emulated host group (one per site): its config, SSH host key, log and TakTuk command shims. */
export interface EmulatedGroupFiles {
  config: string;
  /** The private host key its hosts and VMs present (0600), pinned in the known hosts. */
  hostKey: string;
  log: string;
  commandDir: string;
}

/** Every path under one testbed's state directory. */
export class TestbedLayout {
  readonly stateFile: string;
  readonly lockFile: string;
  /** The service nodes' control endpoint secret (mode 0600): every request but GET /health carries it. */
  readonly controlSecret: string;
  readonly ssh: SshLayout;
  /** The host keys pinned for the testbed's hosts and VMs (OpenSSH known_hosts, 0600; ssh/known-hosts.ts). */
  readonly knownHosts: string;
  /** The deployment environment's dropbear host key (dropbear format), the same at every VM boot. */
  readonly deployHostKey: string;
  readonly servicesDir: string;
  /** What service nodes installed over SSH run: the package and a node binary (testbed/service-bundle.ts). */
  readonly serviceBundle: string;
  /** The kernels and initrds taken out of environment images for classical boots. */
  readonly envBootCache: string;
  /** The embedded Grid'5000 API's jobs and deployments (local provider). */
  readonly apiStateFile: string;
  /** One JSON file per deployment (kastat). */
  readonly deploymentsDir: string;
  readonly emulatedDir: string;
  /** `experiment run`'s record of the stages it finished on this testbed (what a re-run skips). */
  readonly experimentFile: string;
  /** setup's outcome for each VM (answering, or failed with a reason): what `status` compares against. */
  readonly vmsFile: string;
  readonly twin: TwinLayout;

  constructor(readonly dir: string) {
    this.stateFile = join(dir, 'state.json');
    this.lockFile = join(dir, 'lock');
    this.controlSecret = join(dir, 'control-secret');
    const ssh = join(dir, 'ssh');
    const runDir = join(ssh, 'run');
    this.ssh = {
      dir: ssh,
      clientKey: join(ssh, 'id_ed25519'),
      clientPublicKey: join(ssh, 'id_ed25519.pub'),
      hostKey: join(ssh, 'ssh_host_ed25519_key'),
      config: join(ssh, 'sshd_config'),
      authorizedKeys: join(ssh, 'authorized_keys'),
      runDir,
      pidFile: (ns) => join(runDir, `${ns}.pid`),
      logFile: (ns) => join(runDir, `${ns}.log`),
      homeDir: (ns) => join(ssh, 'home', ns),
    };
    this.knownHosts = join(ssh, 'known_hosts');
    this.deployHostKey = join(ssh, 'deploy_dropbear_ed25519_host_key');
    this.servicesDir = join(dir, 'services');
    this.serviceBundle = join(dir, 'service-bundle.tar.gz');
    this.envBootCache = join(dir, 'env-boot');
    this.apiStateFile = join(dir, 'api-state.json');
    this.deploymentsDir = join(dir, 'deployments');
    this.emulatedDir = join(dir, 'emulated');
    this.experimentFile = join(dir, 'experiment.json');
    this.vmsFile = join(dir, 'vms.json');
    const twin = join(dir, 'twin');
    this.twin = {
      dir: twin,
      clientKey: join(twin, 'id_ed25519'),
      clientPublicKey: join(twin, 'id_ed25519.pub'),
      machineDir: (ns) => join(twin, 'machines', ns),
    };
  }

  /** The layout of a testbed by name, under the state root. */
  static of(name: string): TestbedLayout {
    return new TestbedLayout(testbedDir(name));
  }

  /** The service node on `host` (FQDN or short name) serving `site`: services/<short>-<site>. */
  serviceNode(host: string, site: string): ServiceNodeFiles {
    return serviceNodeFilesIn(this.servicesDir, host, site);
  }

  emulatedGroup(site: string): EmulatedGroupFiles {
    return {
      config: join(this.emulatedDir, `${site}.json`),
      hostKey: join(this.emulatedDir, `${site}.host_key`),
      log: join(this.emulatedDir, `${site}.log`),
      commandDir: join(this.emulatedDir, `${site}.commands`),
    };
  }
}
