// What a service node installed over SSH runs: this package as built here (bin, dist, templates,
// its production dependencies) and this machine's own node binary, in one gzipped tar the
// controller sends to each service node. The node binary goes along because Debian 12's nodejs
// (18) is older than the package needs, and a Grid'5000 node has no other source for one; the
// controller and the nodes are both x86_64 Linux.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, readdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, posix } from 'node:path';
import { execa } from 'execa';
import { TestbedError } from '../errors.js';
import { packageRoot } from '../package-root.js';
import { sq } from '../shell.js';
import type { SshSession } from '../ssh/session.js';

export interface ServiceBundle {
  file: string;
  /** The start of its SHA-256: a service node that already holds this bundle skips the copy. */
  id: string;
}

/** Inside the bundle: the node binary, next to the package's own files. */
export const bundledNode = 'runtime/node';
export const bundledCli = 'bin/run.js';

const packageFiles = ['bin', 'dist', 'templates', 'package.json', 'oclif.manifest.json'];

/**
 * Builds the bundle at `file`, or reuses the one an earlier run of this setup left there when the
 * package has not changed since (a setup resumed after an upgrade ships the new one).
 */
export async function serviceBundle(file: string): Promise<ServiceBundle> {
  const built = await packageFingerprint();
  const madeFrom = await readFile(`${file}.from`, 'utf8').catch(() => null);
  if (madeFrom !== built) await rm(file, { force: true });
  if (!(await exists(file))) {
    const parts = [];
    for (const f of packageFiles) if (await exists(join(packageRoot, f))) parts.push(f);
    if (!parts.includes('dist'))
      throw new TestbedError(`${packageRoot} has no dist/: build the package first`);
    parts.push(...(await productionModules()));
    const node = await realpath(process.execPath);
    const tmp = `${file}.tmp`;
    const r = await execa(
      'tar',
      [
        '-c',
        '-I',
        'gzip -1',
        '-f',
        tmp,
        '-C',
        packageRoot,
        ...parts,
        // the node binary, renamed into runtime/ (only the member named exactly as it is)
        '-C',
        dirname(node),
        `--transform=s,^${basename(node)}$,${bundledNode},`,
        basename(node),
      ],
      { reject: false },
    );
    if (r.exitCode !== 0) {
      await rm(tmp, { force: true });
      throw new TestbedError(`cannot pack the service node bundle: ${r.stderr.trim().split('\n').pop()}`);
    }
    await rename(tmp, file);
    await writeFile(`${file}.from`, built);
  }
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk);
  return { file, id: hash.digest('hex').slice(0, 16) };
}

/**
 * Unpacks the bundle into `packageDir` on the node behind `session`, unless the node already holds
 * this very bundle there; says where the node binary and the CLI are.
 */
export async function shipBundle(
  session: SshSession,
  bundle: ServiceBundle,
  packageDir: string,
  node: string,
): Promise<{ node: string; cli: string; packageDir: string }> {
  const marker = posix.join(packageDir, `.bundle-${bundle.id}`);
  const have = await session.exec(`test -e ${sq(marker)}`, 20_000);
  if (have.code !== 0) {
    const dir = sq(packageDir);
    const r = await session.run(
      `rm -rf ${dir} && mkdir -p ${dir} && tar -xzf - -C ${dir} && touch ${sq(marker)}`,
      {
        timeoutMs: 600_000,
        stdin: createReadStream(bundle.file),
      },
    );
    if (r.code !== 0) {
      const why = r.error ?? (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-3).join(' | ');
      throw new TestbedError(`${node}: copying the package failed: ${why}`);
    }
  }
  return {
    node: posix.join(packageDir, bundledNode),
    cli: posix.join(packageDir, bundledCli),
    packageDir,
  };
}

/** What the bundle is made of, in short: every packed file of this package, its size and time. */
async function packageFingerprint(): Promise<string> {
  const hash = createHash('sha256');
  for (const f of packageFiles) {
    const entries = await readdir(join(packageRoot, f), { recursive: true }).catch(() => ['']);
    for (const e of entries.sort()) {
      const st = await stat(join(packageRoot, f, e)).catch(() => null);
      if (st?.isFile()) hash.update(`${f}/${e} ${st.size} ${st.mtimeMs}\n`);
    }
  }
  return hash.digest('hex');
}

/** The package's production dependencies (npm's view), as paths under the package root. */
async function productionModules(): Promise<string[]> {
  const r = await execa('npm', ['ls', '--omit=dev', '--all', '--parseable'], {
    cwd: packageRoot,
    reject: false,
  });
  const roots = [packageRoot, await realpath(packageRoot)].map((p) => `${p}/`);
  const modules = await realpath(join(packageRoot, 'node_modules')).catch(() => null);
  const rel = (line: string): string | null => {
    for (const root of roots) if (line.startsWith(root)) return line.slice(root.length);
    if (modules && line.startsWith(`${modules}/`)) return `node_modules/${line.slice(modules.length + 1)}`;
    return null;
  };
  const paths = r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map(rel)
    .filter((p): p is string => p?.startsWith('node_modules/') ?? false)
    .sort();
  if (paths.length === 0) {
    throw new TestbedError(
      `npm ls found no production dependencies under ${packageRoot}: ${r.stderr.trim()}`,
    );
  }
  // a package's own node_modules comes with it
  return paths.filter((p, i) => !paths.slice(0, i).some((q) => p.startsWith(`${q}/`)));
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}
