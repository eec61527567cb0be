// Finding a program as a shell would: the first executable file of that name on a PATH.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** The path of `name` in the PATH's directories (then `extraDirs`), or null. */
export function findExecutable(
  name: string,
  pathEnv = process.env.PATH ?? '',
  extraDirs: readonly string[] = [],
): string | null {
  for (const dir of [...pathEnv.split(delimiter).filter(Boolean), ...extraDirs]) {
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {}
  }
  return null;
}
