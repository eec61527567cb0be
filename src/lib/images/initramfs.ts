// The initramfs every node boots over the network (the deployment environment's first step):
// static busybox with its applet links, the kernel's virtio modules and an /init rendered from
// vm-images/deploy-env/init.hbs, packed as a gzip-compressed newc cpio. Cached by a hash of
// everything that goes in, so an unchanged input set is a file lookup.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { gunzip as gunzipCb, gzip as gzipCb } from 'node:zlib';
import { execa } from 'execa';
import Handlebars from 'handlebars';
import { KbError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import { linkApplets } from './deploy-env/stage.js';
import { defaultCacheDir, formatBytes, MissingToolError, runToolBinary, vmImagesDir, walk } from './tools.js';

const gzip = promisify(gzipCb);
const gunzip = promisify(gunzipCb);

/** The line /init prints once the modules are loaded; tests and the controller wait for it. */
export const bootMarker = 'KABOOTSTRAP-BOOT-OK';

/**
 * Load order checked on Debian 12's cloud kernel (virtio-net and virtio-blk under QEMU).
 * Dependencies read from each module's modinfo are inserted first anyway, so another kernel's
 * extra dependencies do not break the list.
 */
export const virtioModules = [
  'virtio_ring',
  'virtio',
  'virtio_pci_legacy_dev',
  'virtio_pci_modern_dev',
  'virtio_pci',
  'failover',
  'net_failover',
  'virtio_net',
  'virtio_blk',
] as const;

export const defaultInitTemplate = join(vmImagesDir, 'deploy-env', 'init.hbs');

/** Bump when the layout of the image changes, so cached images built by older code are not reused. */
const builderVersion = 'initramfs-v1';

export interface InitramfsOptions {
  /** From getDebianKernel(): lib/modules/<release> of the extracted kernel. */
  modulesDir: string;
  modules?: readonly string[];
  cacheDir?: string;
  /** A static busybox; found at run time when omitted. */
  busybox?: string;
  initTemplate?: string;
  /** End /init in a shell instead of powering off (interactive debugging). */
  shell?: boolean;
  logger?: Logger;
}

export interface Initramfs {
  path: string;
  /** Hash of the inputs (the cache key). */
  hash: string;
  size: number;
  /** Time this call took to build it; 0 when it came from the cache. */
  buildMs: number;
  cached: boolean;
  /** Modules packed, in load order (including dependencies that were added). */
  modules: string[];
  /** Requested modules the kernel has built in. */
  builtin: string[];
  /** Requested modules neither shipped as .ko nor built in (skipped). */
  missing: string[];
}

export async function buildInitramfs(opts: InitramfsOptions): Promise<Initramfs> {
  const log = opts.logger ?? silentLogger;
  const started = Date.now();
  const busyboxPath = opts.busybox ?? (await findBusybox());
  const busybox = await readFile(busyboxPath);
  if (!isStaticElf(busybox)) {
    throw new MissingToolError(
      `${busyboxPath} is not a static busybox (the initramfs has no libc): install the Debian package busybox-static`,
    );
  }
  const plan = await planModules(opts.modulesDir, opts.modules ?? virtioModules);
  const init = renderInit({
    template: opts.initTemplate ?? defaultInitTemplate,
    modules: plan.modules.map((m) => m.name),
    shell: opts.shell ?? false,
  });

  const h = createHash('sha256');
  const add = (label: string, data: string | Buffer) => {
    h.update(`${label}\0${data.length}\0`);
    h.update(data);
  };
  add('builder', builderVersion);
  add('busybox', busybox);
  add('init', init);
  for (const m of plan.modules) add(`module ${m.name}`, m.data);
  const hash = h.digest('hex').slice(0, 16);

  const cacheDir = join(opts.cacheDir ?? defaultCacheDir, 'initramfs');
  const path = join(cacheDir, `initramfs-${hash}.cpio.gz`);
  const result = (size: number, buildMs: number, cached: boolean): Initramfs => ({
    path,
    hash,
    size,
    buildMs,
    cached,
    modules: plan.modules.map((m) => m.name),
    builtin: plan.builtin,
    missing: plan.missing,
  });
  try {
    const s = await stat(path);
    log.debug(`initramfs: ${path} (${formatBytes(s.size)}) cached`);
    return result(s.size, 0, true);
  } catch {}

  await mkdir(cacheDir, { recursive: true });
  const stage = await mkdtemp(join(cacheDir, '.stage-'));
  try {
    for (const d of 'bin sbin usr/bin usr/sbin dev proc sys run tmp etc root lib/modules'.split(' ')) {
      await mkdir(join(stage, d), { recursive: true });
    }
    await writeFile(join(stage, 'bin/busybox'), busybox, { mode: 0o755 });
    await linkApplets(busyboxPath, stage);
    for (const m of plan.modules) await writeFile(join(stage, 'lib/modules', `${m.name}.ko`), m.data);
    await writeFile(join(stage, 'init'), init);
    await chmod(join(stage, 'init'), 0o755);

    const files = (await walk(stage)).map((p) => relative(stage, p)).sort();
    const cpio = await packCpio(stage, files);
    const gz = await gzip(cpio, { level: 9 });
    // Write then rename: readers (and parallel builders) only ever see a complete image.
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, gz);
    await rename(tmp, path);
    const buildMs = Date.now() - started;
    log.info(
      `initramfs: built ${path} (${formatBytes(gz.length)}, ${plan.modules.length} modules) in ${buildMs} ms`,
    );
    return result(gz.length, buildMs, false);
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

export function renderInit(opts: { template?: string; modules: readonly string[]; shell?: boolean }): string {
  return renderInitText(
    readTemplate(opts.template ?? defaultInitTemplate),
    opts.modules,
    opts.shell ?? false,
  );
}

function renderInitText(text: string, modules: readonly string[], shell: boolean): string {
  for (const m of modules) {
    // They end up in a shell word list.
    if (!/^[A-Za-z0-9_-]+$/.test(m)) throw new KbError(`initramfs: bad module name ${JSON.stringify(m)}`);
  }
  return Handlebars.compile(text, { noEscape: true, strict: true })({ modules, marker: bootMarker, shell });
}

function readTemplate(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new KbError(`initramfs: cannot read the /init template ${path}: ${(e as Error).message}`);
  }
}

/** The first static busybox among the usual places (busybox-static installs /bin/busybox). */
export async function findBusybox(
  candidates = ['/bin/busybox', '/usr/bin/busybox', '/sbin/busybox', '/usr/sbin/busybox'],
): Promise<string> {
  let dynamic: string | null = null;
  for (const c of candidates) {
    let head: Buffer;
    try {
      head = await readHead(c, 64 * 1024);
    } catch {
      continue;
    }
    if (isStaticElf(head)) return c;
    dynamic ??= c;
  }
  throw new MissingToolError(
    dynamic
      ? `${dynamic} is dynamically linked and no static busybox was found: install the Debian package busybox-static`
      : 'busybox not found: install the Debian package busybox-static',
  );
}

async function readHead(path: string, n: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** A 64-bit little-endian ELF executable with no PT_INTERP program header (no dynamic loader). */
export function isStaticElf(buf: Buffer): boolean {
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2 || buf[5] !== 1) return false;
  const phoff = Number(buf.readBigUInt64LE(32));
  const phentsize = buf.readUInt16LE(54);
  const phnum = buf.readUInt16LE(56);
  if (phoff + phentsize * phnum > buf.length) return false;
  for (let i = 0; i < phnum; i++) {
    if (buf.readUInt32LE(phoff + i * phentsize) === 3) return false;
  }
  return true;
}

async function packCpio(stage: string, files: string[]): Promise<Buffer> {
  // GNU cpio: newc is the format the kernel unpacks; root-owned entries whatever the builder is.
  const r = await execa(
    'cpio',
    ['--null', '--create', '--format=newc', '--owner=0:0', '--reproducible', '--quiet'],
    {
      cwd: stage,
      input: `${files.join('\0')}\0`,
      encoding: 'buffer',
      reject: false,
    },
  );
  if ((r as { code?: string }).code === 'ENOENT')
    throw new MissingToolError('cpio not found: install the Debian package cpio');
  if (r.exitCode !== 0) {
    throw new KbError(
      `cpio failed (exit ${r.exitCode}): ${Buffer.from(r.stderr).toString().trim().split('\n').at(-1)}`,
    );
  }
  return Buffer.from(r.stdout);
}

interface PlannedModule {
  name: string;
  /** Uncompressed .ko content. */
  data: Buffer;
}

/**
 * Which requested modules to pack and in what order: each module's dependencies (its modinfo
 * `depends=`) before it, built-in ones skipped, missing ones reported. Compressed modules are
 * decompressed here, so /init's insmod never has to handle xz/zstd.
 */
export async function planModules(
  modulesDir: string,
  wanted: readonly string[],
): Promise<{ modules: PlannedModule[]; builtin: string[]; missing: string[] }> {
  const index = await indexModules(modulesDir);
  const builtinSet = await readBuiltin(modulesDir);
  const modules: PlannedModule[] = [];
  const builtin: string[] = [];
  const missing: string[] = [];
  const done = new Set<string>();
  const visit = async (raw: string, requested: boolean, stack: string[]) => {
    const name = norm(raw);
    if (done.has(name)) return;
    if (stack.includes(name))
      throw new KbError(`kernel modules: dependency cycle ${[...stack, name].join(' → ')}`);
    const file = index.get(name);
    if (!file) {
      done.add(name);
      if (builtinSet.has(name)) {
        if (requested) builtin.push(name);
      } else if (requested) missing.push(name);
      else throw new KbError(`kernel modules: ${stack.at(-1)} depends on ${name}, which this kernel lacks`);
      return;
    }
    const data = await loadModule(file);
    for (const dep of modinfoDepends(data)) await visit(dep, false, [...stack, name]);
    done.add(name);
    modules.push({ name, data });
  };
  for (const w of wanted) await visit(w, true, []);
  return { modules, builtin, missing };
}

/** Module names use `_` and `-` interchangeably. */
function norm(name: string): string {
  return name.replaceAll('-', '_');
}

const moduleExt = /\.ko(\.xz|\.zst|\.gz)?$/;

async function indexModules(modulesDir: string): Promise<Map<string, string>> {
  const index = new Map<string, string>();
  let files: string[];
  try {
    files = await walk(join(modulesDir, 'kernel'));
  } catch {
    throw new KbError(
      `kernel modules: ${modulesDir}/kernel not found (is this an extracted kernel package?)`,
    );
  }
  for (const f of files) {
    const base = f.slice(f.lastIndexOf('/') + 1);
    if (moduleExt.test(base)) index.set(norm(base.replace(moduleExt, '')), f);
  }
  return index;
}

async function readBuiltin(modulesDir: string): Promise<Set<string>> {
  const out = new Set<string>();
  try {
    for (const line of (await readFile(join(modulesDir, 'modules.builtin'), 'utf8')).split('\n')) {
      const base = line.trim().split('/').at(-1);
      if (base) out.add(norm(base.replace(moduleExt, '')));
    }
  } catch {}
  return out;
}

async function loadModule(file: string): Promise<Buffer> {
  if (file.endsWith('.ko')) return readFile(file);
  if (file.endsWith('.ko.gz')) return gunzip(await readFile(file));
  if (file.endsWith('.ko.xz')) return runToolBinary('xz', ['-dc', file], 'xz-utils');
  return runToolBinary('zstd', ['-dcq', file], 'zstd');
}

/** The `depends=` entry of a module's .modinfo section (NUL-separated key=value strings). */
export function modinfoDepends(ko: Buffer): string[] {
  const key = Buffer.from('\0depends=');
  const at = ko.indexOf(key);
  if (at < 0) return [];
  const start = at + key.length;
  const end = ko.indexOf(0, start);
  return ko
    .subarray(start, end < 0 ? undefined : end)
    .toString('latin1')
    .split(',')
    .filter(Boolean);
}
