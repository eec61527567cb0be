// An environment's own kernel and initrd (its description's boot.kernel and boot.initrd), taken
// out of its tar image, so a service node can network-boot the deployed system with them, as
// Kadeploy does for PXE-booted deployed systems. Read straight from the (gzip, zstd, xz or plain)
// stream with a small tar reader, so nothing else of the image is written anywhere; symlinks
// inside the image (Debian's /vmlinuz -> boot/vmlinuz-6.1...) are followed. Cached by the image's
// sha256: a directory <cacheDir>/<sha256>/ with kernel, initrd and manifest.json, made whole by
// one rename.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { InputError } from '../errors.js';
import { envLabel, type RegisteredEnvironment } from './registry.js';
import type { Compression } from './schema.js';

/** Largest kernel or initrd taken out of an image (a real distribution's initrd is ~50 MB). */
export const maxBootFileBytes = 512 * 1024 * 1024;

export interface BootFile {
  path: string;
  bytes: number;
  sha256: string;
}

export interface EnvBootFiles {
  imageSha256: string;
  /** Each file's own sha256 names it on the service nodes: envs/<sha256>/kernel. */
  kernel: BootFile;
  initrd: BootFile | null;
  /** boot.kernel_params as written in the description. */
  kernelParams: string;
}

// --- tar -----------------------------------------------------------------------------------------

export type TarEntry =
  | { type: 'file'; data: Buffer }
  | { type: 'symlink'; target: string }
  | { type: 'hardlink'; target: string }
  | { type: 'other' };

/** `./boot/vmlinuz`, `/boot/vmlinuz` and `boot/vmlinuz` are one member: `boot/vmlinuz`. */
export function memberName(path: string): string {
  const n = posix.normalize(`/${path}`).replace(/^\/+/, '').replace(/\/+$/, '');
  return n === '.' ? '' : n;
}

class ByteReader {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  private async fill(): Promise<boolean> {
    const r = await this.it.next();
    if (r.done) return false;
    const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    this.buf = this.buf.length > 0 ? Buffer.concat([this.buf, chunk]) : chunk;
    return true;
  }

  /** Exactly n bytes, or null at the end of the stream (a short read included). */
  async read(n: number): Promise<Buffer | null> {
    while (this.buf.length < n) if (!(await this.fill())) return null;
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** n bytes handed to `sink` piece by piece (or dropped without one); false if the stream ends first. */
  async pass(n: number, sink?: (piece: Buffer) => void): Promise<boolean> {
    let left = n;
    while (left > 0) {
      if (this.buf.length === 0 && !(await this.fill())) return false;
      const k = Math.min(left, this.buf.length);
      sink?.(Buffer.from(this.buf.subarray(0, k)));
      this.buf = this.buf.subarray(k);
      left -= k;
    }
    return true;
  }
}

function cString(b: Buffer): string {
  const z = b.indexOf(0);
  return b.subarray(0, z < 0 ? b.length : z).toString('utf8');
}

function octal(b: Buffer, what: string): number {
  // GNU base-256 for sizes over 8 GB: the first byte's high bit set
  if (b[0] & 0x80) {
    let v = b[0] & 0x7f;
    for (let i = 1; i < b.length; i++) v = v * 256 + b[i];
    return v;
  }
  const t = cString(b).trim();
  if (t === '') return 0;
  if (!/^[0-7]+$/.test(t)) throw new Error(`not a tar header (bad ${what} field)`);
  return Number.parseInt(t, 8);
}

/** The records of a pax extended header: `LEN key=value\n` each. */
function paxRecords(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(0x20, i);
    if (sp < 0) break;
    const len = Number(data.subarray(i, sp).toString('ascii'));
    if (!Number.isInteger(len) || len <= 0 || i + len > data.length) break;
    const rec = data.subarray(sp + 1, i + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1));
    i += len;
  }
  return out;
}

/**
 * Reads a tar stream (ustar, GNU long names, pax) and returns the members named in `wanted`
 * (normalised by memberName): regular files with their data, links with their targets. Stops
 * reading once every wanted member is found. Throws on a damaged archive, or a wanted file over
 * `maxBytes`.
 */
export async function readTarMembers(
  source: AsyncIterable<Buffer>,
  wanted: ReadonlySet<string>,
  maxBytes = maxBootFileBytes,
): Promise<Map<string, TarEntry>> {
  const it = source[Symbol.asyncIterator]();
  const r = new ByteReader(it);
  const found = new Map<string, TarEntry>();
  let longName: string | null = null;
  let longLink: string | null = null;
  let pax = new Map<string, string>();
  try {
    while (found.size < wanted.size) {
      const h = await r.read(512);
      if (h === null) break;
      if (h.every((x) => x === 0)) break; // the end-of-archive blocks
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
      if (h[148] & 0x80 || octal(h.subarray(148, 156), 'checksum') !== sum) {
        throw new Error('not a tar header (checksum mismatch)');
      }
      const type = String.fromCharCode(h[156] || 0x30);
      const size = pax.has('size') ? Number(pax.get('size')) : octal(h.subarray(124, 136), 'size');
      const padded = Math.ceil(size / 512) * 512;
      const magic = h.subarray(257, 263).toString('latin1');
      const prefix = magic.startsWith('ustar') ? cString(h.subarray(345, 500)) : '';
      const headerName = prefix ? `${prefix}/${cString(h.subarray(0, 100))}` : cString(h.subarray(0, 100));
      if (type === 'L' || type === 'K' || type === 'x' || type === 'g') {
        const parts: Buffer[] = [];
        if (size > 1024 * 1024) throw new Error(`extended header of ${size} bytes`);
        if (!(await r.pass(padded, (p) => parts.push(p)))) throw new Error('truncated archive');
        const data = Buffer.concat(parts).subarray(0, size);
        if (type === 'L') longName = cString(data);
        else if (type === 'K') longLink = cString(data);
        else if (type === 'x') pax = paxRecords(data);
        continue;
      }
      const name = memberName(pax.get('path') ?? longName ?? headerName);
      const link = pax.get('linkpath') ?? longLink ?? cString(h.subarray(157, 257));
      longName = null;
      longLink = null;
      pax = new Map();
      if (!wanted.has(name)) {
        if (!(await r.pass(padded))) throw new Error('truncated archive');
        continue;
      }
      if (type === '0' || type === '7') {
        if (size > maxBytes) throw new Error(`${name} is ${size} bytes, over the ${maxBytes}-byte limit`);
        const parts: Buffer[] = [];
        if (!(await r.pass(size, (p) => parts.push(p))) || !(await r.pass(padded - size))) {
          throw new Error(`truncated archive (in ${name})`);
        }
        found.set(name, { type: 'file', data: Buffer.concat(parts) });
      } else {
        if (!(await r.pass(padded))) throw new Error('truncated archive');
        // a later member of the same name replaces an earlier one, as tar -x does
        found.set(
          name,
          type === '2'
            ? { type: 'symlink', target: link }
            : type === '1'
              ? { type: 'hardlink', target: memberName(link) }
              : { type: 'other' },
        );
      }
    }
  } finally {
    await it.return?.();
  }
  return found;
}

// --- decompression -------------------------------------------------------------------------------

const tools: Partial<Record<Compression, { bin: string; pkg: string }>> = {
  zstd: { bin: 'zstd', pkg: 'zstd' },
  xz: { bin: 'xz', pkg: 'xz-utils' },
};

/**
 * The image's bytes, decompressed; `close()` stops reading (and the decompressor) early;
 * `result()` waits for the decompressor to end and gives its failure, if any.
 */
function openImage(
  path: string,
  compression: Compression,
): { stream: Readable; close(): void; result(): Promise<Error | null> } {
  const file = createReadStream(path);
  const none = async () => null;
  if (compression === 'none') return { stream: file, close: () => file.destroy(), result: none };
  if (compression === 'gzip') {
    const gunzip = createGunzip();
    file.on('error', (e) => gunzip.destroy(e));
    file.pipe(gunzip);
    return {
      stream: gunzip,
      close: () => {
        file.destroy();
        gunzip.destroy();
      },
      result: none,
    };
  }
  const tool = tools[compression]!;
  const child = spawn(tool.bin, ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let error: Error | null = null;
  let stderr = '';
  child.on('error', (e) => {
    const code = (e as NodeJS.ErrnoException).code;
    error = new Error(
      code === 'ENOENT' ? `${tool.bin} is not installed (Debian package ${tool.pkg})` : e.message,
    );
    child.stdout.destroy(error);
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const ended = new Promise<Error | null>((resolve) => {
    child.on('close', (code, signal) => {
      if (code && !signal && !error) {
        error = new Error(`${tool.bin} -d: ${stderr.trim().split('\n').at(-1) || `exit ${code}`}`);
      }
      resolve(error);
    });
    child.on('error', () => resolve(error));
  });
  child.stdin.on('error', () => {}); // EPIPE when we stop reading early
  file.on('error', (e) => child.stdout.destroy(e));
  file.pipe(child.stdin);
  return {
    stream: child.stdout,
    close: () => {
      file.destroy();
      child.kill();
    },
    result: () => ended,
  };
}

// --- extraction ----------------------------------------------------------------------------------

/** Where a link member's target points, as a member name: `..` stops at the image's root, as in the system. */
function resolveLink(member: string, target: string): string {
  return memberName(target.startsWith('/') ? target : posix.join(posix.dirname(member), target));
}

/**
 * The regular files `paths` (image paths such as /boot/vmlinuz) name in a tar image, following
 * symlinks and hard links inside it (a pass over the image per level). One InputError naming the
 * path if one is missing, not a file, or a link loop, or if the image cannot be read.
 */
export async function extractFromTar(
  image: string,
  compression: Compression,
  paths: string[],
  opts: { label?: string; maxBytes?: number } = {},
): Promise<Map<string, Buffer>> {
  const label = opts.label ?? image;
  const out = new Map<string, Buffer>();
  // what each requested path currently resolves to
  const at = new Map(paths.map((p) => [p, memberName(p)]));
  for (let hop = 0; hop < 8 && out.size < paths.length; hop++) {
    const wanted = new Set([...at].filter(([p]) => !out.has(p)).map(([, m]) => m));
    const img = openImage(image, compression);
    let found: Map<string, TarEntry>;
    try {
      found = await readTarMembers(img.stream, wanted, opts.maxBytes);
    } catch (e) {
      img.close();
      const why = (await img.result()) ?? (e as Error);
      throw new InputError(
        `environment ${label}: cannot read image ${image} as a ${compression} tar: ${why.message}`,
      );
    }
    // all found: stop the decompressor; else the archive ended, and the decompressor may say why
    if (found.size === wanted.size) img.close();
    const failed = found.size < wanted.size ? await img.result() : null;
    if (failed) {
      throw new InputError(
        `environment ${label}: cannot read image ${image} as a ${compression} tar: ${failed.message}`,
      );
    }
    for (const [p, m] of at) {
      if (out.has(p)) continue;
      const e = found.get(m);
      if (!e) throw new InputError(`environment ${label}: ${p} is not in the image ${image}`);
      if (e.type === 'file') out.set(p, e.data);
      else if (e.type === 'other')
        throw new InputError(`environment ${label}: ${p} in the image is not a file`);
      else at.set(p, e.type === 'symlink' ? resolveLink(m, e.target) : e.target);
    }
  }
  const left = paths.filter((p) => !out.has(p));
  if (left.length > 0) throw new InputError(`environment ${label}: ${left[0]} in the image is a link loop`);
  return out;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * The environment's kernel and initrd out of its image, cached under `cacheDir` by the image's
 * sha256 (and the paths taken, as two descriptions may share an image). Null when there is
 * nothing to take: no boot.kernel, or a dd image (which carries its own boot loader, so the local
 * disk boots it).
 */
export async function envBootFiles(
  env: RegisteredEnvironment,
  cacheDir: string,
): Promise<EnvBootFiles | null> {
  const desc = env.description;
  if (!desc.boot || desc.image.kind !== 'tar') return null;
  const kernelParams = desc.boot.kernel_params ?? '';
  const paths = [desc.boot.kernel, ...(desc.boot.initrd ? [desc.boot.initrd] : [])];
  const dir = join(cacheDir, `${env.sha256}-${sha(Buffer.from(paths.join('\0'))).slice(0, 8)}`);
  type Manifest = { kernel: Omit<BootFile, 'path'>; initrd: Omit<BootFile, 'path'> | null };
  const withPaths = (m: Manifest): EnvBootFiles => ({
    imageSha256: env.sha256,
    kernel: { ...m.kernel, path: join(dir, 'kernel') },
    initrd: m.initrd && { ...m.initrd, path: join(dir, 'initrd') },
    kernelParams,
  });
  try {
    return withPaths(JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest);
  } catch {}
  const got = await extractFromTar(env.imagePath, desc.image.compression, paths, { label: envLabel(env) });
  await mkdir(cacheDir, { recursive: true });
  const tmp = join(cacheDir, `.${env.sha256}.${process.pid}.${randomBytes(4).toString('hex')}`);
  await mkdir(tmp);
  try {
    const file = async (name: string, data: Buffer) => {
      await writeFile(join(tmp, name), data);
      return { bytes: data.length, sha256: sha(data) };
    };
    const manifest: Manifest = {
      kernel: await file('kernel', got.get(desc.boot.kernel)!),
      initrd: desc.boot.initrd ? await file('initrd', got.get(desc.boot.initrd)!) : null,
    };
    // written last: a directory with a manifest is complete
    await writeFile(join(tmp, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    try {
      await rename(tmp, dir);
    } catch (e) {
      // another deployment cached the same image meanwhile: theirs is as good
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
    }
    return withPaths(manifest);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
