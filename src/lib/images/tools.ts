// Running the host tools image building needs (apt, dpkg-deb, cpio, xz, ...), with one-line
// errors that name the Debian package to install instead of an ENOENT stack.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { KbError } from '../errors.js';
import { packageRoot } from '../package-root.js';

/** Where downloaded kernels and built initramfs images are kept (gitignored). */
export const defaultCacheDir = join(packageRoot, 'vm-images', 'cache');
/** Templates and files for the images kabootstrap boots (the deployment environment). */
export const vmImagesDir = join(packageRoot, 'vm-images');

/** A host tool or file kabootstrap needs is not installed; the message names the package. */
export class MissingToolError extends KbError {}

export interface ToolResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Runs a tool; a missing binary is a MissingToolError naming `pkg`, a failure is a KbError. */
export async function runTool(
  cmd: string,
  args: string[],
  opts: { pkg: string; cwd?: string; input?: string | Buffer; env?: Record<string, string>; check?: boolean },
): Promise<ToolResult> {
  const r = await execa(cmd, args, {
    cwd: opts.cwd,
    input: opts.input,
    env: opts.env,
    reject: false,
    stripFinalNewline: false,
  });
  if ((r as { code?: string }).code === 'ENOENT') {
    throw new MissingToolError(`${cmd} not found: install the Debian package ${opts.pkg}`);
  }
  const out = { stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), exitCode: r.exitCode ?? -1 };
  if (opts.check !== false && out.exitCode !== 0) {
    throw new KbError(
      `${cmd} ${args.join(' ')} failed (exit ${out.exitCode}): ${lastLine(out.stderr || out.stdout)}`,
    );
  }
  return out;
}

/** Runs a tool that writes binary output (decompressors); returns stdout as a Buffer. */
export async function runToolBinary(cmd: string, args: string[], pkg: string): Promise<Buffer> {
  const r = await execa(cmd, args, { reject: false, encoding: 'buffer' });
  if ((r as { code?: string }).code === 'ENOENT') {
    throw new MissingToolError(`${cmd} not found: install the Debian package ${pkg}`);
  }
  if (r.exitCode !== 0) {
    throw new KbError(
      `${cmd} ${args.join(' ')} failed (exit ${r.exitCode}): ${lastLine(Buffer.from(r.stderr).toString())}`,
    );
  }
  return Buffer.from(r.stdout);
}

export function lastLine(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return lines.at(-1) ?? '(no output)';
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

/** Every path below a directory, depth first (directories before their contents). */
export async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    out.push(p);
    if (e.isDirectory()) out.push(...(await walk(p)));
  }
  return out;
}
