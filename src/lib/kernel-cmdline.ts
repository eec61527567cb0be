// A kernel command line that goes into an iPXE script (an environment's `kernel_params`, a boot
// profile set through the control endpoint, the deployment kernel's line): what may go in, and why
// not. Below every layer that takes one, so environments and service nodes share the rule.
import { z } from 'zod';

/** Kernel parameters go into an iPXE script: no `$` (expansion), `|`, `&`, quotes or newlines. */
export const cmdlinePattern = /^[A-Za-z0-9 ._,:;=/+@%~-]*$/;

/** Words iPXE takes as the end of one command and the start of another (its exec.c). */
const ipxeOperators = new Set([';', '&&', '||']);

/**
 * Why `text` cannot go into a line of an iPXE script, or null. A line break or control character
 * ends the command, `$` expands a setting, quotes and backslashes regroup the words, a standalone
 * `;`, `&&` or `||` starts another command, and a word opening with `#` a comment.
 */
export function ipxeTextProblem(text: string): string | null {
  if (/[\r\n]/.test(text)) return 'contains a line break, which ends the iPXE command';
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the control characters are the point
  if (/[\x00-\x1f\x7f]/.test(text)) return 'contains a control character';
  const special = /[$"'\\`]/.exec(text);
  if (special) return `contains ${special[0]}, which iPXE interprets`;
  for (const word of text.split(/[ \t]+/)) {
    if (ipxeOperators.has(word))
      return `contains a standalone ${word}, which iPXE runs as the start of another command`;
    if (word.startsWith('#')) return `has a word starting with #, which iPXE takes for a comment`;
  }
  return null;
}

/** A kernel command line for an iPXE script: what cmdlinePattern allows and no iPXE operator. */
export const cmdlineSchema = z
  .string({ error: 'expected the kernel command line' })
  .max(2048, { error: 'longer than 2048 characters' })
  .superRefine((text, ctx) => {
    // the iPXE reason first: it says what the character would have done
    const problem =
      ipxeTextProblem(text) ??
      (cmdlinePattern.test(text)
        ? null
        : 'only letters, digits, spaces and . _ , : ; = / + @ % ~ - may go into an iPXE script');
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
