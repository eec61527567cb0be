// The experiment's environment: a recipe's `environments: [{name, imageMB}]` names an image by its
// size only, so this builds one — a real tar.gz (identity, a kernel and initrd for classical
// boots, incompressible filler up to the size) — of imageMB / scale MiB and registers it. One
// machine cannot move 4552 × 430 MB: the scale is the --image-scale flag, or derived from the VM
// count, free memory and free disk; the report states it. Images are cached by size and reused.
import { createCipheriv } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { freemem } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { TestbedConfig } from '../config/schema.js';
import { addEnvironment, type RegisteredEnvironment } from '../envs/registry.js';
import { InputError, KbError } from '../errors.js';
import { experimentsDir } from '../state/layout.js';

export const MiB = 2 ** 20;

/**
 * Every emulated VM hashes every byte it receives on this machine's cores: at most this much in
 * all (measured: 1000 VMs × 16 MB by chain in about a minute on 2 cores).
 */
export const aggregateBudgetBytes = 16 * 2 ** 30;

export type EnvSpec =
  | { kind: 'sized'; name: string; imageMB: number }
  | { kind: 'file'; name: string; file: string };

/** The recipe's first environment; a recipe without one cannot be replayed. */
export function envSpecOf(config: TestbedConfig, source: string): EnvSpec {
  const e = config.environments[0];
  if (!e)
    throw new InputError(`config ${source}: environments: the experiment needs an environment to deploy`);
  if (e.file !== undefined) return { kind: 'file', name: e.name, file: e.file };
  return { kind: 'sized', name: e.name, imageMB: e.imageMB! };
}

export interface ScaleChoice {
  /** The divisor of imageMB (1: full size). */
  scale: number;
  /** How it was chosen. */
  reason: string;
}

/**
 * The default divisor: the image must fit a quarter of the free disk and an eighth of the free
 * memory (the file, its staging copy and the page cache the broadcast reads it from), and the
 * VMs together receive at most aggregateBudgetBytes.
 */
export function defaultScale(
  imageMB: number,
  vms: number,
  free: { memBytes: number; diskBytes: number },
): ScaleChoice {
  const limits: [number, string][] = [
    [free.diskBytes / 4, 'a quarter of the free disk'],
    [free.memBytes / 8, 'an eighth of the free memory'],
    [aggregateBudgetBytes / Math.max(1, vms), `${aggregateBudgetBytes / 2 ** 30} GiB over ${vms} VMs`],
  ];
  const [maxBytes, why] = limits.reduce((a, b) => (b[0] < a[0] ? b : a));
  const scale = Math.max(1, Math.ceil((imageMB * MiB) / maxBytes));
  return {
    scale,
    reason: scale === 1 ? 'full size fits' : `at most ${(maxBytes / MiB).toFixed(1)} MiB per image: ${why}`,
  };
}

export async function freeResources(dir: string): Promise<{ memBytes: number; diskBytes: number }> {
  await mkdir(dir, { recursive: true });
  const fs = await statfs(dir);
  return { memBytes: freemem(), diskBytes: fs.bavail * fs.bsize };
}

/** `count` bytes of a fixed keystream: incompressible, and the same on every build. */
async function writeFiller(file: string, count: number): Promise<void> {
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), Buffer.alloc(16, 0));
  const out = createWriteStream(file);
  const chunk = Buffer.alloc(MiB);
  for (let left = count; left > 0; left -= chunk.length) {
    const block = cipher.update(left >= chunk.length ? chunk : chunk.subarray(0, left));
    if (!out.write(block)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
}

/** Small files every image carries: its identity and the boot files a classical boot takes out. */
const bootBytes = 64 * 1024;

/**
 * Builds (or finds) `<name>-<bytes>.tar.gz` of about `bytes` bytes and its description under
 * experimentsDir()/images, and returns the description's path.
 */
export async function buildSizedImage(name: string, bytes: number): Promise<string> {
  const dir = join(experimentsDir(), 'images');
  const base = `${name}-${bytes}`;
  const archive = join(dir, `${base}.tar.gz`);
  const description = join(dir, `${base}.yaml`);
  try {
    await stat(join(dir, `${base}.done`));
    return description;
  } catch {}
  await mkdir(dir, { recursive: true });
  const work = await mkdtemp(join(dir, '.build-'));
  try {
    const root = join(work, 'root');
    await mkdir(join(root, 'etc'), { recursive: true });
    await mkdir(join(root, 'boot'), { recursive: true });
    await mkdir(join(root, 'var'), { recursive: true });
    await writeFile(join(root, 'etc', 'kb-env'), `${name} 1\n`);
    await writeFiller(join(root, 'boot', 'vmlinuz'), bootBytes);
    await writeFiller(join(root, 'boot', 'initrd.img'), bootBytes);
    await writeFiller(join(root, 'var', 'filler'), Math.max(0, bytes - 2 * bootBytes - 8192));
    const tmp = join(work, 'image.tar.gz');
    const r = await execa(
      'tar',
      ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '-I', 'gzip -1', '-cf', tmp, '-C', root, '.'],
      {
        reject: false,
      },
    );
    if (r.exitCode !== 0) throw new KbError(`tar: could not pack ${base}: ${r.stderr.split('\n')[0]}`);
    await rename(tmp, archive);
    await writeFile(
      description,
      `# Built by kabootstrap experiment run: the ${name} environment at ${bytes} bytes.
name: ${name}
version: 1
description: ${name} scaled to ${bytes} bytes for one machine
author: kabootstrap
visibility: shared
os: linux
image: { file: ${base}.tar.gz, kind: tar, compression: gzip }
boot: { kernel: /boot/vmlinuz, initrd: /boot/initrd.img, kernel_params: "root=/dev/vda1" }
filesystem: ext4
`,
    );
    await writeFile(join(dir, `${base}.done`), '');
    return description;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export interface ExperimentEnv {
  env: RegisteredEnvironment;
  /** The size the recipe names (MiB), or the registered file's when it names a file. */
  imageMB: number;
  /** imageMB / the image's real size: 1 when the image is deployed at full size. */
  imageScale: number;
  /** How the scale was chosen. */
  scaleReason: string;
}

/** Builds the scaled image when the recipe gives a size, and registers the environment. */
export async function registerExperimentEnv(
  spec: EnvSpec,
  opts: { user: string; vms: number; scale?: number; configDir: string },
): Promise<ExperimentEnv> {
  if (spec.kind === 'file') {
    const env = await addEnvironment(join(opts.configDir, spec.file), { user: opts.user, replace: true });
    return { env, imageMB: env.bytes / MiB, imageScale: 1, scaleReason: 'the recipe names an image file' };
  }
  const choice =
    opts.scale !== undefined
      ? { scale: opts.scale, reason: '--image-scale' }
      : defaultScale(spec.imageMB, opts.vms, await freeResources(experimentsDir()));
  const bytes = Math.max(256 * 1024, Math.round((spec.imageMB * MiB) / choice.scale));
  const description = await buildSizedImage(spec.name, bytes);
  const env = await addEnvironment(description, { user: opts.user, replace: true });
  return {
    env,
    imageMB: spec.imageMB,
    imageScale: (spec.imageMB * MiB) / env.bytes,
    scaleReason: choice.reason,
  };
}
