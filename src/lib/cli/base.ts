// The base of every kabootstrap command: --json (result object on stdout), progress and logs on
// stderr, and exit codes that mean something (see ExitCode). Commands stay thin: parse flags,
// call a service in src/lib, render.
import { Command, Flags } from '@oclif/core';
import { ExitCode, KbError } from '../errors.js';
import { type Logger, stderrLogger } from '../log.js';
import { type Progress, silentProgress } from '../progress.js';
import { listrProgress } from './listr-progress.js';

export abstract class BaseCommand extends Command {
  static enableJsonFlag = true;

  static baseFlags = {
    verbose: Flags.boolean({ char: 'v', description: 'Log debug details (API retries, ...) to stderr.' }),
    quiet: Flags.boolean({ char: 'q', description: 'No progress display on stderr.' }),
  };

  protected logger(flags: { verbose?: boolean }): Logger {
    return stderrLogger({ verbose: flags.verbose });
  }

  protected progress(flags: { quiet?: boolean }): Progress {
    return flags.quiet ? silentProgress : listrProgress();
  }

  protected async catch(err: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<void> {
    let code: number;
    let message: string;
    if (err instanceof KbError) {
      code = err.exitCode;
      message = err.message;
    } else if (err.oclif?.exit !== undefined) {
      // Flag parsing and usage errors from oclif.
      code = err.oclif.exit === 0 ? 0 : ExitCode.badInput;
      message = oclifMessage(err.message);
      if (code === 0) return;
    } else {
      code = ExitCode.internal;
      message = `internal error: ${err.message}`;
      if (process.env.DEBUG) process.stderr.write(`${err.stack}\n`);
    }
    process.stderr.write(`kabootstrap: ${message}\n`);
    if (this.jsonEnabled()) this.logJson({ error: { message, exitCode: code } });
    process.exitCode = code;
  }
}

/**
 * oclif's parse errors span lines ("Parsing --window \n\tExpected an integer greater than or equal
 * to 1 but received: 0\nSee more help with --help"): one line naming the flag and the cause.
 */
export function oclifMessage(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^See more help/.test(l) && !/^The following errors? occurred:$/.test(l));
  const parsing = /^Parsing (--?\S+)$/.exec(lines[0] ?? '');
  if (parsing && lines[1]) return `${parsing[1]}: ${lines[1].charAt(0).toLowerCase()}${lines[1].slice(1)}`;
  return lines.join(' ');
}
