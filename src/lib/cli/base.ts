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
      message = err.message.split('\n')[0];
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
