// Files served from a root directory (HTTP and TFTP share this): a request names a path as
// segments, and nothing outside the root is ever opened, whether by `..`, an absolute path or a
// symlink that points elsewhere. Range parsing for HTTP lives here too, as pure functions.
import { type FileHandle, open, realpath } from 'node:fs/promises';
import { join, sep } from 'node:path';

export type Opened =
  | { kind: 'file'; handle: FileHandle; size: number; mtime: Date; rel: string }
  | { kind: 'denied'; reason: string }
  | { kind: 'missing' }
  | { kind: 'not-a-file' };

/**
 * Splits a request path into segments, dropping empty and `.` ones. Null when it could leave the
 * root: a `..` segment anywhere (even one that would stay inside: no server-side dot-segment
 * resolution to get wrong), a NUL or a backslash (a separator to some clients).
 */
export function safeSegments(path: string): string[] | null {
  if (/[\0\\]/.test(path)) return null;
  const segs = path.split('/').filter((s) => s !== '' && s !== '.');
  if (segs.some((s) => s === '..')) return null;
  return segs;
}

/** Opens root/segments read-only after checking, with symlinks resolved, that it stays in root. */
export async function openInRoot(root: string, segments: string[]): Promise<Opened> {
  if (segments.length === 0) return { kind: 'not-a-file' };
  if (segments.some((s) => s === '..' || s.includes('/') || s.includes('\0'))) {
    return { kind: 'denied', reason: 'path leaves the root' };
  }
  let real: string;
  let realRoot: string;
  try {
    realRoot = await realpath(root);
    real = await realpath(join(realRoot, ...segments));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { kind: 'missing' };
    if (code === 'ELOOP') return { kind: 'denied', reason: 'symlink loop' };
    if (code === 'EACCES' || code === 'EPERM') return { kind: 'denied', reason: 'permission denied' };
    throw e;
  }
  if (real !== realRoot && !real.startsWith(realRoot.endsWith(sep) ? realRoot : realRoot + sep)) {
    return { kind: 'denied', reason: 'symlink points outside the root' };
  }
  let handle: FileHandle;
  try {
    handle = await open(real, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { kind: 'missing' };
    if (code === 'EACCES' || code === 'EPERM') return { kind: 'denied', reason: 'permission denied' };
    if (code === 'EISDIR') return { kind: 'not-a-file' };
    throw e;
  }
  const st = await handle.stat().catch(async (e) => {
    await handle.close();
    throw e;
  });
  if (!st.isFile()) {
    await handle.close();
    return { kind: 'not-a-file' };
  }
  return { kind: 'file', handle, size: st.size, mtime: st.mtime, rel: segments.join('/') };
}

export type RangeResult =
  /** Serve the whole file (no Range, a syntax we ignore, or several ranges). */
  { kind: 'full' } | { kind: 'partial'; start: number; end: number } | { kind: 'unsatisfiable' };

/**
 * One `bytes=` range against a file of `size` bytes (RFC 9110 §14.1.2). A header we cannot parse
 * is ignored, as the RFC allows; so is a multi-range request (we send the whole file with 200
 * rather than multipart/byteranges, which no boot loader asks for).
 */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (!header) return { kind: 'full' };
  const m = /^\s*bytes\s*=\s*(.+)$/i.exec(header);
  if (!m || m[1].includes(',')) return { kind: 'full' };
  const r = /^\s*(\d*)\s*-\s*(\d*)\s*$/.exec(m[1]);
  if (!r || (r[1] === '' && r[2] === '')) return { kind: 'full' };
  if (r[1] === '') {
    // Suffix range: the last N bytes.
    const n = Number(r[2]);
    if (n === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'partial', start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(r[1]);
  const end = r[2] === '' ? size - 1 : Math.min(Number(r[2]), size - 1);
  if (r[2] !== '' && Number(r[2]) < start) return { kind: 'full' };
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'partial', start, end };
}
