// A small deployable environment to exercise deployments: a busybox root with dropbear, the
// Debian cloud kernel and an initrd that mounts root= and switches to it, packed as a tar.gz,
// plus its environment description (recipes/envs/tiny.yaml's format). Reproducible (sorted,
// fixed mtimes, root-owned) and cached by a hash of its inputs.
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { KbError } from '../../errors.js';
import { type Logger, silentLogger } from '../../log.js';
import { type DebianKernel, getDebianKernel } from '../debian-kernel.js';
import { findBusybox, planModules, virtioModules } from '../initramfs.js';
import { defaultCacheDir, formatBytes, vmImagesDir } from '../tools.js';
import { deployEnvDir, deployTools } from './build.js';
import {
  binaryWithLibs,
  InputHash,
  linkApplets,
  packCpioGz,
  packTarGz,
  type StagedFile,
  stageBusyboxRoot,
} from './stage.js';

const builderVersion = 'test-env-v1';
const testEnvDir = join(vmImagesDir, 'test-env');

export interface EnvDescription {
  name: string;
  version: number;
  description: string;
  author: string;
  visibility: 'public' | 'private' | 'shared';
  os: 'linux';
  image: { file: string; kind: 'tar'; compression: 'gzip' };
  boot: { kernel: string; initrd: string; kernel_params: string };
  filesystem: 'ext4';
}

export interface TestEnv {
  /** The rootfs archive and its description, in the cache's envs/tiny directory. */
  archive: string;
  description: string;
  env: EnvDescription;
  hash: string;
  size: number;
  buildMs: number;
  cached: boolean;
  contents: string[];
}

export function tinyEnvDescription(file: string): EnvDescription {
  return {
    name: 'tiny',
    version: 1,
    description: 'busybox root with dropbear, for deployment tests',
    author: 'kabootstrap',
    visibility: 'public',
    os: 'linux',
    image: { file, kind: 'tar', compression: 'gzip' },
    boot: {
      kernel: '/boot/vmlinuz',
      initrd: '/boot/initrd.img',
      kernel_params: 'console=ttyS0 root=/dev/vda1',
    },
    filesystem: 'ext4',
  };
}

export async function buildTestEnv(
  opts: { cacheDir?: string; kernel?: DebianKernel; busybox?: string; logger?: Logger } = {},
): Promise<TestEnv> {
  const log = opts.logger ?? silentLogger;
  const started = Date.now();
  const cacheDir = opts.cacheDir ?? defaultCacheDir;
  const kernel = opts.kernel ?? (await getDebianKernel({ cacheDir, logger: log }));
  const busyboxPath = opts.busybox ?? (await findBusybox());
  const busybox = await readFile(busyboxPath);
  const plan = await planModules(kernel.modulesDir, virtioModules);
  const initrdInit = await readFile(join(testEnvDir, 'initrd-init'));

  const files: StagedFile[] = [];
  for (const t of deployTools.filter((x) => x.path.includes('dropbear'))) {
    const got = await binaryWithLibs(t.path, t.pkg);
    if (!got) throw new KbError(`${t.path} not found: install the Debian package ${t.pkg}`);
    files.push(...got);
  }
  files.push(
    { path: '/sbin/init', data: await readFile(join(testEnvDir, 'init')), mode: 0o755 },
    { path: '/etc/udhcpc.script', data: await readFile(join(deployEnvDir, 'udhcpc.script')), mode: 0o755 },
    // the node agent too: exec, put and reboot work on the deployed system as in the deployment environment
    { path: '/usr/bin/kb-agent', data: await readFile(join(deployEnvDir, 'kb-agent')), mode: 0o755 },
    { path: '/etc/passwd', data: Buffer.from('root:x:0:0:root:/root:/bin/sh\n'), mode: 0o644 },
    { path: '/etc/group', data: Buffer.from('root:x:0:\n'), mode: 0o644 },
    { path: '/etc/shadow', data: Buffer.from('root:*:19000:0:99999:7:::\n'), mode: 0o600 },
    { path: '/etc/shells', data: Buffer.from('/bin/sh\n'), mode: 0o644 },
    { path: '/etc/hostname', data: Buffer.from('tiny\n'), mode: 0o644 },
    // its identity, as a deployment checks it once the system is up
    {
      path: '/etc/kb-env',
      data: Buffer.from(`${tinyEnvDescription('').name} ${tinyEnvDescription('').version}\n`),
      mode: 0o644,
    },
    { path: '/boot/vmlinuz', data: await readFile(kernel.vmlinuz), mode: 0o644 },
  );
  const h = new InputHash()
    .add('builder', builderVersion)
    .add('busybox', busybox)
    .add('initrd-init', initrdInit);
  for (const m of plan.modules) h.add(`module ${m.name}`, m.data);
  for (const f of [...files].sort((a, b) => a.path.localeCompare(b.path)))
    h.add(`${f.path} ${f.mode}`, f.data);
  const hash = h.digest();

  // A stable path, so recipes/envs/tiny.yaml can name it; the hash file says what is there.
  const dir = join(cacheDir, 'envs', 'tiny');
  const archive = join(dir, 'tiny.tar.gz');
  const description = join(dir, 'tiny.yaml');
  // relative to the description's own directory, as `env add` resolves it
  const env = tinyEnvDescription('tiny.tar.gz');
  try {
    const m = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as {
      hash: string;
      contents: string[];
    };
    if (m.hash === hash) {
      const s = await stat(archive);
      return {
        archive,
        description,
        env,
        hash,
        size: s.size,
        buildMs: 0,
        cached: true,
        contents: m.contents,
      };
    }
  } catch {}

  await mkdir(join(cacheDir, 'envs'), { recursive: true });
  const work = await mkdtemp(join(cacheDir, 'envs', '.build-'));
  try {
    // The initrd: busybox, virtio modules in load order, and an /init that switches to root=.
    const ird = join(work, 'initrd');
    for (const d of 'bin sbin dev proc sys newroot lib/modules'.split(' '))
      await mkdir(join(ird, d), { recursive: true });
    await writeFile(join(ird, 'bin/busybox'), busybox, { mode: 0o755 });
    await linkApplets(busyboxPath, ird);
    for (const m of plan.modules) await writeFile(join(ird, 'lib/modules', `${m.name}.ko`), m.data);
    await writeFile(join(ird, 'lib/modules/order'), `${plan.modules.map((m) => m.name).join('\n')}\n`);
    await writeFile(join(ird, 'init'), initrdInit, { mode: 0o755 });
    const initrd = await packCpioGz(ird);

    const stage = join(work, 'root');
    await stageBusyboxRoot(
      stage,
      'bin sbin usr/bin usr/sbin dev proc sys run tmp etc root/.ssh var boot',
      { path: busyboxPath, data: busybox },
      [...files, { path: '/boot/initrd.img', data: initrd.data, mode: 0o644 }],
    );
    const packed = await packTarGz(stage);
    const out = join(work, 'out');
    await mkdir(out);
    await writeFile(join(out, 'tiny.tar.gz'), packed.data);
    await writeFile(join(out, 'tiny.yaml'), stringify(env));
    const contents = packed.files.map((f) => `/${f}`);
    await writeFile(join(out, 'manifest.json'), `${JSON.stringify({ hash, contents }, null, 2)}\n`);
    await rm(dir, { recursive: true, force: true });
    await rename(out, dir);
    const buildMs = Date.now() - started;
    log.info(`test env: built ${archive} (${formatBytes(packed.data.length)}) in ${buildMs} ms`);
    return { archive, description, env, hash, size: packed.data.length, buildMs, cached: false, contents };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
