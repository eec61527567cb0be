// Testbed credentials for HTTP Basic auth from outside Grid'5000.
// Inside the testbed (frontends, nodes) the API needs none, hence `null`.

import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parse, YAMLParseError } from 'yaml';
import { InputError } from '../errors.js';

export interface Credentials {
  username: string;
  password: string;
  /**
   * `verify_ssl` of the file: false skips the TLS certificate check; a CA bundle (its text, read
   * from the path the file gave) checks against it. Absent: the system's CAs.
   */
  tls?: { verify: false } | { ca: string };
}

export const CREDENTIALS_FILE = '.grid5000.yml';
/** The file Grid'5000's Python tools (python-grid5000, EnOSlib) read. */
export const PYTHON_CREDENTIALS_FILE = '.python-grid5000.yaml';

/**
 * Credentials from, in order: G5K_USER/G5K_PASSWORD, `~/.grid5000.yml`, `~/.python-grid5000.yaml`;
 * null when none is there (inside Grid'5000 the API needs none).
 */
export async function loadCredentials(
  opts: { env?: NodeJS.ProcessEnv; home?: string } = {},
): Promise<Credentials | null> {
  const env = opts.env ?? process.env;
  if (env.G5K_USER && env.G5K_PASSWORD) return { username: env.G5K_USER, password: env.G5K_PASSWORD };
  for (const name of [CREDENTIALS_FILE, PYTHON_CREDENTIALS_FILE]) {
    const file = join(opts.home ?? homedir(), name);
    const text = await readOptional(file);
    if (text === null) continue;
    const creds = await parseCredentialsFile(file, text);
    if (creds) return creds;
  }
  return null;
}

async function readOptional(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new InputError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** Null for a file with neither login nor password (as used inside Grid'5000, for verify_ssl only). */
async function parseCredentialsFile(file: string, text: string): Promise<Credentials | null> {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    // The YAML library quotes the offending source line, which may be the password line:
    // report only the position.
    if (err instanceof YAMLParseError) {
      const pos = err.linePos?.[0];
      const where = pos ? ` at line ${pos.line}, column ${pos.col}` : '';
      throw new InputError(`${file}: not valid YAML${where} (${err.code})`);
    }
    throw new InputError(`${file}: not valid YAML`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new InputError(`${file}: expected a mapping with "username" and "password"`);
  }
  const record = doc as Record<string, unknown>;
  if (record.username === undefined && record.password === undefined) return null;
  const field = (key: 'username' | 'password'): string => {
    const v = record[key];
    // An unquoted all-digit password reads as a number in YAML.
    if (typeof v === 'string' && v !== '') return v;
    if (typeof v === 'number') return String(v);
    throw new InputError(`${file}: "${key}" is missing or not a string`);
  };
  // `uri` (used by other Grid'5000 tools) is ignored on purpose: the config's api.url says where.
  const creds: Credentials = { username: field('username'), password: field('password') };
  const verify = record.verify_ssl;
  if (verify === false) creds.tls = { verify: false };
  else if (typeof verify === 'string' && verify !== '') {
    const ca = await readOptional(verify);
    if (ca === null) throw new InputError(`${file}: verify_ssl: CA bundle ${verify} does not exist`);
    creds.tls = { ca };
  } else if (verify !== undefined && verify !== null && verify !== true) {
    throw new InputError(`${file}: verify_ssl must be true, false or the path of a CA bundle`);
  }
  return creds;
}

/** Removes the password, in every encoding a request could carry it, from `text`. */
export function redact(text: string, creds: Credentials | null | undefined): string {
  if (!creds?.password) return text;
  const forms = new Set([
    creds.password,
    encodeURIComponent(creds.password),
    Buffer.from(`${creds.username}:${creds.password}`).toString('base64'),
    Buffer.from(creds.password).toString('base64'),
  ]);
  let out = text;
  // Longest first, so a form containing another is replaced whole.
  for (const form of [...forms].sort((a, b) => b.length - a.length)) {
    out = out.split(form).join('***');
  }
  return out;
}

/**
 * A URL fit to print or record: a password given inside it (`https://user:secret@host/`) is
 * replaced by `***`; a text that is not a URL is returned as it is.
 */
export function printableUrl(url: string): string {
  try {
    const u = new URL(url);
    if (!u.password) return url;
    u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

/**
 * The login and password given inside a URL (`https://user:secret@host/`), and the URL without
 * them: requests carry the login in a header, never in a URL that could be printed.
 */
export function splitUrlCredentials(url: string): { url: string; credentials: Credentials | null } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { url, credentials: null };
  }
  if (!u.username && !u.password) return { url, credentials: null };
  const credentials =
    u.username && u.password
      ? { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) }
      : null;
  u.username = '';
  u.password = '';
  return { url: u.toString(), credentials };
}

/** The URL without the password it may carry (the login is kept): fit to record in a state. */
export function withoutUrlPassword(url: string): string {
  try {
    const u = new URL(url);
    if (!u.password) return url;
    u.password = '';
    return u.toString();
  } catch {
    return url;
  }
}
