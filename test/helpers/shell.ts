// Values that must reach a node's shell as themselves, and how /bin/sh itself reads a line.
import { execFileSync } from 'node:child_process';

/** Values an environment, a node file or a flag could carry into a command line. */
export const hostile = [
  'ext4; echo injected',
  '$(echo injected)',
  '`echo injected`',
  "it's",
  '"double" \'single\'',
  'line\nbreak',
  'back\\slash',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: an expansion sh must not do
  '${HOME} $HOME',
  'a && b || c | d < /dev/null',
  '#comment',
  ' spaced  out ',
  '',
  "'",
  "''\\''",
];

/** The words /bin/sh makes of `line` (each printed NUL-terminated). */
export function shWords(line: string): string[] {
  const out = execFileSync('/bin/sh', ['-c', `printf '%s\\0' ${line}`], { encoding: 'utf8' });
  return out.split('\0').slice(0, -1);
}
