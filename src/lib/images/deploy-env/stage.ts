// Staging a root tree for an image and packing it reproducibly: busybox applet links, dynamic
// binaries with the libraries ldd lists (and the loader), fixed mtimes, sorted entries, root
// ownership. Shared by the deployment environment (cpio) and the test environment (tar.gz).
import { createHash, type Hash } from 'node:crypto';
import { lutimes, mkdir, readFile, realpath, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import { execa } from 'execa';
import { KbError } from '../../errors.js';
import { MissingToolError, runTool, walk } from '../tools.js';

const gzip = promisify(gzipCb);

/** Every entry gets this mtime, so the same inputs give byte-identical archives. */
export const fixedMtime = new Date('2020-01-01T00:00:00Z');

/** A file to place in the image: absolute path inside the image → content and mode. */
export interface StagedFile {
  path: string;
  data: Buffer;
  mode: number;
}

/** A hash over labelled inputs (the cache key of an image). */
export class InputHash {
  private h: Hash = createHash('sha256');
  add(label: string, data: string | Buffer): this {
    this.h.update(`${label}\0${data.length}\0`);
    this.h.update(data);
    return this;
  }
  digest(): string {
    return this.h.digest('hex').slice(0, 16);
  }
}

/**
 * The shared libraries a dynamic binary loads, from ldd: `name => /path (addr)` lines and the
 * loader's own line. vdso has no file. Pure, for tests.
 */
export function parseLdd(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const arrow = /=>\s*(\/\S+)/.exec(line);
    const bare = /^\s*(\/\S+)\s+\(0x/.exec(line);
    const p = arrow?.[1] ?? bare?.[1];
    if (p && !out.includes(p)) out.push(p);
  }
  return out;
}

/**
 * A host binary and everything it needs to run in the image, at the same paths (the loader at
 * the path its ELF header names). Null when the binary is not installed.
 */
export async function binaryWithLibs(path: string, pkg: string): Promise<StagedFile[] | null> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch {
    return null;
  }
  const files: StagedFile[] = [{ path, data, mode: 0o755 }];
  const r = await runTool('ldd', [path], { pkg: 'libc-bin', check: false });
  // "not a dynamic executable" (exit 1): a static binary needs nothing else.
  if (r.exitCode !== 0) return files;
  for (const lib of parseLdd(r.stdout)) {
    let content: Buffer;
    try {
      content = await readFile(await realpath(lib));
    } catch {
      throw new KbError(`${path} (${pkg}) needs ${lib}, which cannot be read`);
    }
    files.push({ path: lib, data: content, mode: 0o755 });
  }
  return files;
}

/** Writes files into the stage (later ones with the same path win). */
export async function writeStaged(stage: string, files: readonly StagedFile[]): Promise<void> {
  for (const f of files) {
    const dest = join(stage, f.path);
    await mkdir(dirname(dest), { recursive: true });
    await writeFile(dest, f.data, { mode: f.mode });
  }
}

/**
 * A busybox root at `stage`: the directories (space-separated), busybox itself, the staged files
 * (real binaries before the applet links, so links never shadow them), then ld.so.cache.
 */
export async function stageBusyboxRoot(
  stage: string,
  dirs: string,
  busybox: { path: string; data: Buffer },
  files: readonly StagedFile[],
): Promise<void> {
  for (const d of dirs.split(' ')) await mkdir(join(stage, d), { recursive: true });
  await writeFile(join(stage, 'bin/busybox'), busybox.data, { mode: 0o755 });
  await writeStaged(stage, files);
  await linkApplets(busybox.path, stage);
  await ldconfig(stage);
}

/** Symlinks to /bin/busybox for every applet, at the paths busybox lists, without replacing files. */
export async function linkApplets(busyboxPath: string, stage: string): Promise<void> {
  const r = await runTool(busyboxPath, ['--list-full'], { pkg: 'busybox-static' });
  for (const rel of r.stdout.split('\n').map((l) => l.trim())) {
    if (!rel || rel === 'linuxrc' || rel === 'bin/busybox' || rel.includes('..')) continue;
    await mkdir(join(stage, dirname(rel)), { recursive: true });
    await symlink('/bin/busybox', join(stage, rel)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
  }
}

/** Sorted relative paths of the stage, every entry's mtime set to fixedMtime. */
export async function settle(stage: string): Promise<string[]> {
  const all = await walk(stage);
  for (const p of all) await lutimes(p, fixedMtime, fixedMtime);
  return all.map((p) => relative(stage, p)).sort();
}

/** A gzip-compressed newc cpio of the stage (what the kernel unpacks as an initramfs). */
export async function packCpioGz(stage: string): Promise<{ data: Buffer; files: string[] }> {
  const files = await settle(stage);
  const r = await execa(
    'cpio',
    ['--null', '--create', '--format=newc', '--owner=0:0', '--reproducible', '--quiet'],
    { cwd: stage, input: `${files.join('\0')}\0`, encoding: 'buffer', reject: false },
  );
  if ((r as { code?: string }).code === 'ENOENT')
    throw new MissingToolError('cpio not found: install the Debian package cpio');
  if (r.exitCode !== 0) throw new KbError(`cpio failed (exit ${r.exitCode}): ${Buffer.from(r.stderr)}`);
  return { data: await gzip(Buffer.from(r.stdout), { level: 9 }), files };
}

/** A gzip-compressed tar of the stage's contents (paths ./...), sorted, root-owned, fixed mtimes. */
export async function packTarGz(stage: string): Promise<{ data: Buffer; files: string[] }> {
  const files = await settle(stage);
  const r = await execa(
    'tar',
    [
      ...['--create', '--format=gnu', '--sort=name', '--numeric-owner', '--owner=0', '--group=0'],
      ...[`--mtime=@${fixedMtime.getTime() / 1000}`, '-C', stage, '-f', '-', '.'],
    ],
    { encoding: 'buffer', reject: false },
  );
  if ((r as { code?: string }).code === 'ENOENT')
    throw new MissingToolError('tar not found: install the Debian package tar');
  if (r.exitCode !== 0) throw new KbError(`tar failed (exit ${r.exitCode}): ${Buffer.from(r.stderr)}`);
  return { data: await gzip(Buffer.from(r.stdout), { level: 9 }), files };
}

/** Builds the dynamic linker cache of the stage, so binaries find libraries wherever they are. */
export async function ldconfig(stage: string): Promise<void> {
  await mkdir(join(stage, 'etc'), { recursive: true });
  await writeFile(join(stage, 'etc', 'ld.so.conf'), '/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n');
  await runTool('ldconfig', ['-r', stage], { pkg: 'libc-bin', check: false });
}
