// Who may use the embedded API: HTTP Basic logins checked against known users and passwords.
// Without known users the API trusts the login it is sent (the in-process local provider).

import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { InputError } from '../errors.js';

/** Login → password. */
export type ApiUsers = ReadonlyMap<string, string>;

const digest = (s: string) => createHash('sha256').update(s).digest();
// Hashing first makes the comparison constant-time whatever the lengths.
const same = (a: string, b: string) => timingSafeEqual(digest(a), digest(b));

/** The login and password of a Basic `authorization` header, or null when there is none. */
export function basicCredentials(req: IncomingMessage): { login: string; password: string } | null {
  const m = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  if (!m) return null;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  return { login: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export type LoginCheck = { ok: true; login: string | null } | { ok: false };

/**
 * With users, a request needs the Basic login of one of them with its password. Without, the
 * login sent (if any) is taken as it is.
 */
export function checkLogin(req: IncomingMessage, users: ApiUsers | undefined): LoginCheck {
  const sent = basicCredentials(req);
  if (!users) return { ok: true, login: sent?.login ?? null };
  if (!sent) return { ok: false };
  // Compare against a dummy when the login is unknown, so that timing does not tell logins apart.
  const expected = users.get(sent.login);
  const ok = same(sent.password, expected ?? '\0unknown-login') && expected !== undefined;
  return ok ? { ok: true, login: sent.login } : { ok: false };
}

/**
 * Reads a users file: one `user: password` per line; blank lines and lines starting with `#`
 * are skipped. The password is everything after the first `: `, spaces at its ends removed.
 * Errors name the file and line, never the line's text (it holds a password).
 */
export function parseUsers(file: string, text: string): Map<string, string> {
  const users = new Map<string, string>();
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Za-z0-9._-]+)\s*:\s*(.+)$/.exec(line);
    if (!m) throw new InputError(`${file}: line ${i + 1} is not "user: password"`);
    if (users.has(m[1])) throw new InputError(`${file}: line ${i + 1}: user ${m[1]} is given twice`);
    users.set(m[1], m[2].trim());
  }
  if (users.size === 0) throw new InputError(`${file}: no "user: password" line`);
  return users;
}

export async function loadUsers(file: string): Promise<Map<string, string>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new InputError(
      `${file}: cannot read the users file (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  return parseUsers(file, text);
}
