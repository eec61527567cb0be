// The deployment environment every VM network-boots into (Kadeploy's "deploy kernel"): the
// Debian cloud kernel plus an initramfs with static busybox, the virtio modules, dropbear with
// its libraries, the disk tools the agent uses, the node agent and the controller's key. Its
// /init (vm-images/deploy-env/deploy-init.hbs) configures the network, starts SSH and stays up.
// Cached by a hash of everything that goes in.
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Handlebars from 'handlebars';
import { KbError } from '../../errors.js';
import { type Logger, silentLogger } from '../../log.js';
import { buildCacheDir } from '../cache-dir.js';
import { type DebianKernel, getDebianKernel } from '../debian-kernel.js';
import { bootMarker, findBusybox, isStaticElf, planModules, virtioModules } from '../initramfs.js';
import { defaultCacheDir, formatBytes, MissingToolError, vmImagesDir } from '../tools.js';
import { controllerKey, deployHostKey, deployHostKeyPath } from './keys.js';
import { binaryWithLibs, InputHash, packCpioGz, type StagedFile, stageBusyboxRoot } from './stage.js';

/** Bump when the image layout changes, so images built by older code are not reused. */
const builderVersion = 'deploy-env-v1';
/** The TCP port whose answer tells the deployment environment from a deployed system. */
export const markerPort = 25300;
export const markerAnswer = 'kabootstrap-deploy-env';
export const deployEnvDir = join(vmImagesDir, 'deploy-env');

/** Host binaries copied in with their libraries; `required` ones fail the build when missing. */
export const deployTools = [
  { path: '/usr/sbin/dropbear', pkg: 'dropbear-bin', required: true },
  { path: '/usr/bin/dropbearkey', pkg: 'dropbear-bin', required: true },
  { path: '/usr/sbin/kexec', pkg: 'kexec-tools', required: false },
  { path: '/usr/sbin/sfdisk', pkg: 'fdisk', required: false },
  { path: '/usr/sbin/mkfs.ext4', pkg: 'e2fsprogs', required: false },
] as const;

/** Modules beyond virtio: ext4 so the agent can mount what it formats. */
export const deployModules = [...virtioModules, 'ext4'] as const;

export interface DeployEnvOptions {
  cacheDir?: string;
  /** The controller's key (private key or .pub); default: a key kept under the cache dir. */
  keyFile?: string;
  /**
   * The dropbear host key every boot presents (dropbear format, made when missing): the testbed's,
   * pinned by the controller. Without it each boot makes a key of its own (nothing to pin).
   */
  hostKeyFile?: string;
  /** An already fetched kernel; fetched with getDebianKernel() otherwise. */
  kernel?: DebianKernel;
  busybox?: string;
  /** End /init in a shell (interactive debugging). */
  shell?: boolean;
  logger?: Logger;
}

export interface DeployEnv {
  /** The kernel and initramfs to serve (copies inside the image's cache directory). */
  kernel: string;
  initrd: string;
  dir: string;
  hash: string;
  sizes: { kernel: number; initrd: number };
  /** This call's build time; 0 when cached. */
  buildMs: number;
  cached: boolean;
  kernelRelease: string;
  /** The private key whose public half is baked in as /root/.ssh/authorized_keys. */
  keyFile: string;
  publicKey: string;
  /** The baked-in host key's public line, when `hostKeyFile` was given. */
  hostPublicKey: string | null;
  /** Every path in the initramfs, sorted. */
  contents: string[];
  modules: string[];
  /** Optional tools not installed on the host, hence not in the image. */
  missingTools: string[];
}

interface Manifest {
  hash: string;
  kernelRelease: string;
  contents: string[];
  modules: string[];
  missingTools: string[];
}

export async function buildDeployEnv(opts: DeployEnvOptions = {}): Promise<DeployEnv> {
  const log = opts.logger ?? silentLogger;
  const started = Date.now();
  const cacheDir = opts.cacheDir ?? defaultCacheDir;
  const kernel = opts.kernel ?? (await getDebianKernel({ cacheDir, logger: log }));
  const key = await controllerKey({ keyFile: opts.keyFile, cacheDir });
  const hostKey = opts.hostKeyFile ? await deployHostKey(opts.hostKeyFile) : null;

  const busyboxPath = opts.busybox ?? (await findBusybox());
  const busybox = await readFile(busyboxPath);
  if (!isStaticElf(busybox)) {
    throw new MissingToolError(`${busyboxPath} is not a static busybox: install busybox-static`);
  }
  const plan = await planModules(kernel.modulesDir, deployModules);
  const files: StagedFile[] = [];
  const missingTools: string[] = [];
  for (const t of deployTools) {
    const got = await binaryWithLibs(t.path, t.pkg);
    if (got) files.push(...got);
    else if (t.required)
      throw new MissingToolError(`${t.path} not found: install the Debian package ${t.pkg}`);
    else missingTools.push(t.path);
  }
  const init = renderDeployInit({ modules: plan.modules.map((m) => m.name), shell: opts.shell ?? false });
  const own = async (name: string) => readFile(join(deployEnvDir, name));
  files.push(
    { path: '/init', data: Buffer.from(init), mode: 0o755 },
    { path: '/usr/bin/kb-agent', data: await own('kb-agent'), mode: 0o755 },
    { path: '/usr/bin/kb-marker', data: await own('kb-marker'), mode: 0o755 },
    { path: '/etc/udhcpc.script', data: await own('udhcpc.script'), mode: 0o755 },
    { path: '/root/.ssh/authorized_keys', data: Buffer.from(`${key.publicKey}\n`), mode: 0o600 },
    // dropbear looks the user up (home, shell) through libc's files backend.
    { path: '/etc/passwd', data: Buffer.from('root:x:0:0:root:/root:/bin/sh\n'), mode: 0o644 },
    { path: '/etc/group', data: Buffer.from('root:x:0:\n'), mode: 0o644 },
    { path: '/etc/shadow', data: Buffer.from('root:*:19000:0:99999:7:::\n'), mode: 0o600 },
    { path: '/etc/shells', data: Buffer.from('/bin/sh\n/bin/ash\n'), mode: 0o644 },
    {
      path: '/etc/nsswitch.conf',
      data: Buffer.from('passwd: files\ngroup: files\nshadow: files\n'),
      mode: 0o644,
    },
  );
  if (hostKey) files.push({ path: deployHostKeyPath, data: hostKey.data, mode: 0o600 });
  for (const m of plan.modules) files.push({ path: `/lib/modules/${m.name}.ko`, data: m.data, mode: 0o644 });

  const h = new InputHash().add('builder', builderVersion).add('busybox', busybox);
  h.add('kernel', `${kernel.package} ${kernel.version}`);
  for (const f of [...files].sort((a, b) => a.path.localeCompare(b.path)))
    h.add(`${f.path} ${f.mode}`, f.data);
  const hash = h.digest();

  const dir = join(cacheDir, 'deploy-env', hash);
  const result = (m: Manifest, buildMs: number, cached: boolean, sizes: DeployEnv['sizes']): DeployEnv => ({
    kernel: join(dir, 'vmlinuz'),
    initrd: join(dir, 'initrd.img'),
    dir,
    hash,
    sizes,
    buildMs,
    cached,
    kernelRelease: m.kernelRelease,
    keyFile: key.privateKeyFile,
    publicKey: key.publicKey,
    hostPublicKey: hostKey?.publicKey ?? null,
    contents: m.contents,
    modules: m.modules,
    missingTools: m.missingTools,
  });
  const existing = await readManifest(dir);
  if (existing) {
    log.debug(`deploy env: ${dir} cached`);
    return result(existing.manifest, 0, true, existing.sizes);
  }

  const done = await buildCacheDir(
    dir,
    '.build-',
    async (work) => {
      const stage = join(work, 'root');
      const dirs = 'bin sbin usr/bin usr/sbin dev proc sys run tmp etc root var lib/modules';
      await stageBusyboxRoot(stage, dirs, { path: busyboxPath, data: busybox }, files);
      const packed = await packCpioGz(stage);
      const out = join(work, 'out');
      await mkdir(out);
      await writeFile(join(out, 'initrd.img'), packed.data);
      await copyFile(kernel.vmlinuz, join(out, 'vmlinuz'));
      const manifest: Manifest = {
        hash,
        kernelRelease: kernel.release,
        contents: packed.files.map((f) => `/${f}`),
        modules: plan.modules.map((m) => m.name),
        missingTools,
      };
      await writeFile(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
      return out;
    },
    readManifest,
    `deploy env: ${dir} is incomplete after the build`,
  );
  const buildMs = Date.now() - started;
  log.info(
    `deploy env: built ${dir} (initrd ${formatBytes(done.sizes.initrd)}, kernel ${formatBytes(done.sizes.kernel)}) in ${buildMs} ms`,
  );
  return result(done.manifest, buildMs, false, done.sizes);
}

export function renderDeployInit(opts: { modules: readonly string[]; shell?: boolean }): string {
  for (const m of opts.modules) {
    if (!/^[A-Za-z0-9_-]+$/.test(m)) throw new KbError(`deploy env: bad module name ${JSON.stringify(m)}`);
  }
  const text = readFileSyncSafe(join(deployEnvDir, 'deploy-init.hbs'));
  return Handlebars.compile(text, { noEscape: true, strict: true })({
    modules: opts.modules,
    marker: bootMarker,
    markerPort,
    shell: opts.shell ?? false,
  });
}

function readFileSyncSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new KbError(`deploy env: cannot read ${path}: ${(e as Error).message}`);
  }
}

async function readManifest(
  dir: string,
): Promise<{ manifest: Manifest; sizes: { kernel: number; initrd: number } } | null> {
  try {
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest;
    const [k, i] = await Promise.all([stat(join(dir, 'vmlinuz')), stat(join(dir, 'initrd.img'))]);
    return { manifest, sizes: { kernel: k.size, initrd: i.size } };
  } catch {
    return null;
  }
}
