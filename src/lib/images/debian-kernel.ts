// A Debian cloud kernel for the VMs, taken from the apt archive without installing it on the
// host: resolve the concrete package behind the meta package (its Depends), `apt-get download` it and
// `dpkg-deb -x` it into the cache. One directory per package version, so a second call with
// the same candidate version only checks the cache.
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KbError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import { buildCacheDir } from './cache-dir.js';
import { defaultCacheDir, lastLine, runTool } from './tools.js';

export interface DebianKernel {
  /** The concrete package, e.g. linux-image-6.1.0-56-cloud-amd64. */
  package: string;
  version: string;
  /** The kernel release (`uname -r` in the VM), e.g. 6.1.0-56-cloud-amd64. */
  release: string;
  /** The extracted package tree. */
  root: string;
  vmlinuz: string;
  /** lib/modules/<release> in the extracted tree. */
  modulesDir: string;
  /** False when this call downloaded and extracted it. */
  cached: boolean;
}

export interface DebianKernelOptions {
  cacheDir?: string;
  /** The meta package to resolve (its first Depends is the concrete kernel). */
  metaPackage?: string;
  /** Run `apt-get update` once when apt does not know the package (default true). */
  allowUpdate?: boolean;
  logger?: Logger;
}

const manifestName = 'kernel.json';

export async function getDebianKernel(opts: DebianKernelOptions = {}): Promise<DebianKernel> {
  const cacheDir = join(opts.cacheDir ?? defaultCacheDir, 'kernel');
  const meta = opts.metaPackage ?? 'linux-image-cloud-amd64';
  const log = opts.logger ?? silentLogger;

  let resolved = await resolvePackage(meta);
  if (!resolved) {
    // apt does not know it (fresh container without lists): reuse what an earlier run
    // fetched before touching the network.
    const cachedKernel = await newestCached(cacheDir, meta);
    if (cachedKernel) {
      log.debug(
        `kernel: apt does not know ${meta}; using cached ${cachedKernel.package} ${cachedKernel.version}`,
      );
      return cachedKernel;
    }
    if (opts.allowUpdate !== false) {
      log.info(`kernel: apt does not know ${meta}; running apt-get update`);
      const u = await runTool('apt-get', ['update', '-qq'], { pkg: 'apt', check: false });
      if (u.exitCode !== 0) {
        throw new KbError(`cannot get kernel package ${meta}: apt-get update failed: ${lastLine(u.stderr)}`);
      }
      resolved = await resolvePackage(meta);
    }
    if (!resolved) {
      throw new KbError(
        `cannot get kernel package ${meta}: apt has no candidate for it (check /etc/apt/sources.list)`,
      );
    }
  }

  const dir = join(cacheDir, `${resolved.package}_${resolved.version.replaceAll(':', '%3a')}`);
  const existing = await readManifest(dir);
  if (existing) {
    log.debug(`kernel: ${resolved.package} ${resolved.version} cached in ${dir}`);
    return existing;
  }

  const started = Date.now();
  const k = await buildCacheDir(
    dir,
    '.download-',
    async (work) => {
      const dl = await runTool('apt-get', ['download', '-qq', `${resolved.package}=${resolved.version}`], {
        pkg: 'apt',
        cwd: work,
        check: false,
      });
      const debs = (await readdir(work)).filter((f) => f.endsWith('.deb'));
      if (dl.exitCode !== 0 || debs.length !== 1) {
        throw new KbError(
          `cannot download kernel package ${resolved.package} ${resolved.version}: ${lastLine(dl.stderr || dl.stdout)}`,
        );
      }
      const tree = join(work, 'tree');
      await runTool('dpkg-deb', ['-x', join(work, debs[0]), tree], { pkg: 'dpkg' });
      const release = await onlyEntry(join(tree, 'lib', 'modules'), 'lib/modules');
      const vmlinuz = `boot/vmlinuz-${release}`;
      if (!existsSync(join(tree, vmlinuz))) {
        throw new KbError(`kernel package ${resolved.package} has no ${vmlinuz}`);
      }
      await writeFile(
        join(tree, manifestName),
        `${JSON.stringify({ meta, package: resolved.package, version: resolved.version, release, vmlinuz }, null, 2)}\n`,
      );
      return tree;
    },
    readManifest,
    `kernel cache ${dir} is incomplete after extraction`,
  );
  log.info(`kernel: ${k.package} ${k.version} downloaded and extracted in ${Date.now() - started} ms`);
  return { ...k, cached: false };
}

/**
 * The concrete package behind `meta` and its candidate version, or null when apt knows neither.
 * `apt-cache show` gives both in one call (the meta package pins `Depends: pkg (= version)`);
 * apt-cache takes about a second per call here, so a cached kernel costs one call.
 */
export async function resolvePackage(meta: string): Promise<{ package: string; version: string } | null> {
  const show = async (pkg: string) => {
    const r = await runTool('apt-cache', ['show', '--no-all-versions', pkg], { pkg: 'apt', check: false });
    return r.exitCode === 0 ? r.stdout : '';
  };
  const text = await show(meta);
  const version = /^Version:\s*(\S+)/m.exec(text)?.[1];
  if (!version) return null;
  const dep = /^(?:Pre-)?Depends:.*?\b(linux-image-[^\s,|]+)(?:\s*\(=\s*([^)\s]+)\))?/m.exec(text);
  // Given a concrete package rather than a meta package, use it as is.
  if (!dep) return { package: meta, version };
  if (dep[2]) return { package: dep[1], version: dep[2] };
  const v = /^Version:\s*(\S+)/m.exec(await show(dep[1]))?.[1];
  return v ? { package: dep[1], version: v } : null;
}

async function readManifest(dir: string): Promise<DebianKernel | null> {
  let raw: string;
  try {
    raw = await readFile(join(dir, manifestName), 'utf8');
  } catch {
    return null;
  }
  const m = JSON.parse(raw) as { package: string; version: string; release: string; vmlinuz: string };
  return {
    package: m.package,
    version: m.version,
    release: m.release,
    root: dir,
    vmlinuz: join(dir, m.vmlinuz),
    modulesDir: join(dir, 'lib', 'modules', m.release),
    cached: true,
  };
}

async function newestCached(cacheDir: string, meta: string): Promise<DebianKernel | null> {
  let names: string[];
  try {
    names = await readdir(cacheDir);
  } catch {
    return null;
  }
  const found: DebianKernel[] = [];
  for (const n of names) {
    if (n.startsWith('.')) continue;
    const k = await readManifest(join(cacheDir, n));
    if (!k) continue;
    const m = JSON.parse(await readFile(join(cacheDir, n, manifestName), 'utf8')) as { meta?: string };
    if (m.meta === meta || k.package === meta) found.push(k);
  }
  found.sort((a, b) => a.version.localeCompare(b.version, undefined, { numeric: true }));
  return found.at(-1) ?? null;
}

async function onlyEntry(dir: string, what: string): Promise<string> {
  let names: string[] = [];
  try {
    names = await readdir(dir);
  } catch {}
  if (names.length !== 1)
    throw new KbError(`kernel package: expected one ${what} directory, found ${names.length}`);
  return names[0];
}
