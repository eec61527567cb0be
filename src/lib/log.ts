// Progress and logs go to stderr so stdout stays clean for --json output.

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  debug(message: string): void;
}

export const silentLogger: Logger = { info() {}, warn() {}, debug() {} };

export function stderrLogger(opts: { verbose?: boolean } = {}): Logger {
  return {
    info: (m) => process.stderr.write(`${m}\n`),
    warn: (m) => process.stderr.write(`warning: ${m}\n`),
    debug: (m) => {
      if (opts.verbose) process.stderr.write(`debug: ${m}\n`);
    },
  };
}
