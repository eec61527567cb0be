// Reading a user's input file (testbed config, environment description): its text, its YAML as
// a mapping, and a schema failure as one InputError line naming the file and the field path.
import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { InputError } from './errors.js';

/** A field path as written in the file: sites[0].clusters[1].name. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out || '(top level)';
}

/** One schema issue as `field.path: message` (parse with `reportInput: true`). */
export function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') {
    const where = issue.path.length ? `${formatPath(issue.path)}.` : '';
    return `${where}${issue.keys[0]}: unknown key`;
  }
  // A missing key fails as a wrong type or, for an enum, a wrong value: both mean "is required".
  if ((issue.code === 'invalid_type' || issue.code === 'invalid_value') && issue.input === undefined)
    return `${formatPath(issue.path)}: is required`;
  return `${formatPath(issue.path)}: ${issue.message}`;
}

/** The file's text; `label` names it in the error (`config FILE`, `environment FILE`). */
export async function readInputText(file: string, label: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(
      `${label}: cannot read it (${code === 'ENOENT' ? 'no such file' : (code ?? String(e))})`,
    );
  }
}

/** YAML text that must hold a mapping at the top level, as plain objects. */
export function parseYamlMapping(text: string, label: string): object {
  const doc = parseDocument(text, { prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const line = e.linePos?.[0]?.line;
    throw new InputError(`${label}${line ? `:${line}` : ''}: not valid YAML: ${e.message.split('\n')[0]}`);
  }
  let raw: unknown;
  try {
    // the library refuses a document whose aliases would expand beyond reason (an alias bomb)
    raw = doc.toJS({ maxAliasCount: 1000 });
  } catch (e) {
    throw new InputError(`${label}: not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new InputError(`${label}: expected a mapping of settings at the top level`);
  }
  return raw;
}

/** A file's text, or null when it does not exist (a state file not written yet); other errors throw. */
export async function readTextIfExists(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}
