// Environments registered on this machine (Kadeploy's kaenv) and who may deploy them where
// (karights). Both live under envsDir() as JSON files rewritten atomically; the image's
// sha256 is recorded at registration so a deployment can tell when the file changed under it.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { writeFileAtomic } from '../atomic-file.js';
import { InputError } from '../errors.js';
import { formatPath, readInputText, readTextIfExists } from '../input-file.js';
import { withFileLock } from '../state/file-lock.js';
import { envsDir } from '../state/layout.js';
import { type EnvironmentDescription, parseEnvironmentText } from './schema.js';

export interface RegisteredEnvironment {
  description: EnvironmentDescription;
  /** Absolute path of the image, resolved against the YAML file's directory. */
  imagePath: string;
  sha256: string;
  bytes: number;
  owner: string;
  /** ISO time. */
  registeredAt: string;
  /** Absolute path of the YAML file it was registered from. */
  source: string;
}

export interface RightGrant {
  user: string;
  /** Glob over node names: `*` any run of characters (dots included), `?` one character. */
  nodes: string;
  /** Absent or `*`: any partition. */
  partition?: string;
}

/** The privileged user: may publish public environments, deploy anywhere, grant rights. */
export const privilegedUser = 'root';

export function isPrivileged(user: string): boolean {
  return user === privilegedUser;
}

export function registryFile(): string {
  return join(envsDir(), 'registry.json');
}

export function rightsFile(): string {
  return join(envsDir(), 'rights.json');
}

/** `tiny v1`, the way messages name an environment. */
export function envLabel(env: RegisteredEnvironment): string {
  return `${env.description.name} v${env.description.version}`;
}

// --- files ---------------------------------------------------------------------------------------

function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  return writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
}

async function readJson(file: string, what: string): Promise<unknown | null> {
  const text = await readTextIfExists(file);
  if (text === null) return null;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InputError(`${what} ${file}: not valid JSON (${(e as Error).message})`);
  }
}

// Read-modify-write of the registry and rights files: serialised within this process, and
// across processes by a lock file beside them (two `env add` at once must both land).
let queue: Promise<unknown> = Promise.resolve();
function serialised<T>(fn: () => Promise<T>): Promise<T> {
  const locked = () =>
    withFileLock(join(envsDir(), 'registry.lock'), 'the environment registry', 'env', registryLockWaitMs, fn);
  const run = queue.then(locked, locked);
  queue = run.catch(() => {});
  return run;
}

/** How long a registry change waits for another process's (registrations hash images: seconds). */
const registryLockWaitMs = 120_000;

interface RegistryFile {
  version: 1;
  environments: RegisteredEnvironment[];
}

async function readRegistry(): Promise<RegistryFile> {
  const file = registryFile();
  const raw = (await readJson(file, 'registry')) as RegistryFile | null;
  if (raw === null) return { version: 1, environments: [] };
  if (raw.version !== 1 || !Array.isArray(raw.environments)) {
    throw new InputError(`registry ${file}: not a version 1 environment registry`);
  }
  return raw;
}

// --- hashing -------------------------------------------------------------------------------------

/** Streams a file through sha256 (images are hundreds of MB, never read whole). */
export async function hashFile(path: string): Promise<{ sha256: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  await pipeline(createReadStream(path), async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) {
      bytes += chunk.length;
      h.update(chunk);
    }
  });
  return { sha256: h.digest('hex'), bytes };
}

// --- environments --------------------------------------------------------------------------------

function byNameVersion(a: RegisteredEnvironment, b: RegisteredEnvironment): number {
  return (
    a.description.name.localeCompare(b.description.name) || a.description.version - b.description.version
  );
}

export async function addEnvironment(
  file: string,
  opts: { user: string; replace?: boolean },
): Promise<RegisteredEnvironment> {
  const source = resolve(file);
  const text = await readInputText(source, `environment ${file}`);
  const description = parseEnvironmentText(text, file);
  if (description.visibility === 'public' && !isPrivileged(opts.user)) {
    throw new InputError(
      `environment ${file}: visibility: only ${privilegedUser} may register a public environment (use shared)`,
    );
  }
  const imagePath = isAbsolute(description.image.file)
    ? description.image.file
    : resolve(dirname(source), description.image.file);
  let isFile = false;
  try {
    isFile = (await stat(imagePath)).isFile();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    throw new InputError(`environment ${file}: image.file: ${imagePath} does not exist`);
  }
  if (!isFile) throw new InputError(`environment ${file}: image.file: ${imagePath} is not a regular file`);
  const { sha256, bytes } = await hashFile(imagePath);

  return serialised(async () => {
    const reg = await readRegistry();
    const { name, version } = description;
    const idx = reg.environments.findIndex(
      (e) => e.description.name === name && e.description.version === version,
    );
    if (idx >= 0) {
      const old = reg.environments[idx];
      if (!opts.replace) {
        throw new InputError(
          `environment ${file}: version: ${name} v${version} is already registered by ${old.owner} (bump version, or replace it)`,
        );
      }
      if (old.owner !== opts.user && !isPrivileged(opts.user)) {
        throw new InputError(
          `environment ${file}: ${name} v${version} belongs to ${old.owner}, not ${opts.user}`,
        );
      }
    }
    const rec: RegisteredEnvironment = {
      description,
      imagePath,
      sha256,
      bytes,
      owner: opts.user,
      registeredAt: new Date().toISOString(),
      source,
    };
    if (idx >= 0) reg.environments[idx] = rec;
    else reg.environments.push(rec);
    reg.environments.sort(byNameVersion);
    await writeJsonAtomic(registryFile(), reg);
    return rec;
  });
}

/** Only a private environment is hidden, from everyone but its owner and root. */
export function canUse(user: string, env: RegisteredEnvironment): boolean {
  return env.description.visibility !== 'private' || env.owner === user || isPrivileged(user);
}

/** Every registered environment by name then version; with `user`, only those that user may use. */
export async function listEnvironments(opts: { user?: string } = {}): Promise<RegisteredEnvironment[]> {
  const all = (await readRegistry()).environments.sort(byNameVersion);
  const user = opts.user;
  return user === undefined ? all : all.filter((e) => canUse(user, e));
}

function pick(all: RegisteredEnvironment[], name: string, version?: number): RegisteredEnvironment {
  const versions = all.filter((e) => e.description.name === name);
  if (versions.length === 0) {
    const known = [...new Set(all.map((e) => e.description.name))];
    throw new InputError(
      `unknown environment "${name}" (known: ${known.length ? known.join(', ') : 'none'})`,
    );
  }
  if (version === undefined) {
    return versions.reduce((a, b) => (b.description.version > a.description.version ? b : a));
  }
  const hit = versions.find((e) => e.description.version === version);
  if (!hit) {
    const known = versions.map((e) => e.description.version).join(', ');
    throw new InputError(`environment "${name}" has no version ${version} (known: ${known})`);
  }
  return hit;
}

/** One version of an environment; the latest one when `version` is omitted. */
export async function getEnvironment(name: string, version?: number): Promise<RegisteredEnvironment> {
  return pick((await readRegistry()).environments, name, version);
}

/**
 * Removes one version (the latest when `version` is omitted, like getEnvironment: removing every
 * version at once is one call per version on purpose). Only its owner or root may.
 */
export async function removeEnvironment(
  name: string,
  version: number | undefined,
  user: string,
): Promise<RegisteredEnvironment> {
  return serialised(async () => {
    const reg = await readRegistry();
    const env = pick(reg.environments, name, version);
    if (env.owner !== user && !isPrivileged(user)) {
      throw new InputError(`environment ${envLabel(env)} belongs to ${env.owner}: ${user} may not remove it`);
    }
    reg.environments = reg.environments.filter((e) => e !== env);
    await writeJsonAtomic(registryFile(), reg);
    return env;
  });
}

/** Recomputes the image's sha256; throws if the file is gone or differs from what was recorded. */
export async function verifyImage(env: RegisteredEnvironment): Promise<void> {
  let got: { sha256: string; bytes: number };
  try {
    got = await hashFile(env.imagePath);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EISDIR') {
      throw new InputError(
        `environment ${envLabel(env)}: image ${env.imagePath} is missing (registered from ${env.source})`,
      );
    }
    throw e;
  }
  if (got.sha256 !== env.sha256) {
    throw new InputError(
      `environment ${envLabel(env)}: image ${env.imagePath} changed since registration (sha256 ${got.sha256.slice(0, 12)}… recorded ${env.sha256.slice(0, 12)}…)`,
    );
  }
}

// --- rights --------------------------------------------------------------------------------------

const grantSchema = z.strictObject({
  user: z.string({ error: 'expected a user name' }).min(1, { error: 'expected a user name' }),
  nodes: z.string({ error: 'expected a node glob' }).min(1, { error: 'expected a node glob' }),
  partition: z.string({ error: 'expected a partition name' }).optional(),
});

const rightsSchema = z.strictObject({
  version: z.literal(1, { error: 'expected 1' }),
  grants: z.array(grantSchema, { error: 'expected a list of grants' }),
});

async function readRights(): Promise<RightGrant[] | null> {
  const file = rightsFile();
  const raw = await readJson(file, 'rights');
  if (raw === null) return null;
  const parsed = rightsSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InputError(`rights ${file}: ${formatPath(issue.path)}: ${issue.message}`);
  }
  return parsed.data.grants;
}

export async function listRights(): Promise<RightGrant[]> {
  return (await readRights()) ?? [];
}

/** Adds a grant (idempotent). Only root grants: a user granting themselves would make rights moot. */
export async function grantRights(by: string, grant: RightGrant): Promise<RightGrant[]> {
  if (!isPrivileged(by)) throw new InputError(`rights: only ${privilegedUser} may grant rights, not ${by}`);
  const parsed = grantSchema.safeParse(grant);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InputError(`rights: ${formatPath(issue.path)}: ${issue.message}`);
  }
  return serialised(async () => {
    const grants = (await readRights()) ?? [];
    const g = parsed.data;
    const same = (x: RightGrant) => x.user === g.user && x.nodes === g.nodes && x.partition === g.partition;
    if (!grants.some(same)) grants.push(g);
    await writeJsonAtomic(rightsFile(), { version: 1, grants });
    return grants;
  });
}

/** `*` is any run of characters (dots included, so `node-*.nancy.*` spans domains), `?` one. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (const ch of glob) {
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else re += ch.replace(/[.+^${}()|[\]\\/-]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function grantCovers(grant: RightGrant, user: string, node: string, partition?: string): boolean {
  if (grant.user !== user && grant.user !== '*') return false;
  if (grant.partition !== undefined && grant.partition !== '*' && grant.partition !== partition) return false;
  return globToRegExp(grant.nodes).test(node);
}

/**
 * Throws unless `user` may deploy `env` on every node (on `partition` when given). A private
 * environment is usable by its owner only. root may always deploy. With no rights file at all,
 * every user may deploy on any node: the testbed is built on this machine by whoever runs
 * kabootstrap, so its nodes are that user's own; writing a rights file is how to restrict them.
 * A grant with no partition (or `*`) covers every partition; one naming a partition covers only it.
 */
export async function checkDeployRights(
  user: string,
  env: RegisteredEnvironment,
  nodeNames: readonly string[],
  opts: { partition?: string } = {},
): Promise<void> {
  if (!canUse(user, env)) {
    throw new InputError(
      `environment ${envLabel(env)} is private to ${env.owner}: ${user} may not deploy it`,
    );
  }
  if (isPrivileged(user)) return;
  const grants = await readRights();
  if (grants === null) return;
  const mine = grants.filter((g) => g.user === user || g.user === '*');
  for (const node of nodeNames) {
    if (!mine.some((g) => grantCovers(g, user, node, opts.partition))) {
      const where = opts.partition === undefined ? '' : ` (partition ${opts.partition})`;
      throw new InputError(
        `node ${node}: ${user} may not deploy on it${where}: no grant in ${rightsFile()} covers it`,
      );
    }
  }
}
