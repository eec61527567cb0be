// The one shape of a command's outcome, whoever ran it (an SSH session, a network namespace, a
// fake target in a test): exec, broadcast, deploy, recipes and the QEMU host code all read this.

export interface CommandResult {
  /** Exit status; null when the command never reported one (unreachable, timeout, lost). */
  code: number | null;
  /** The signal that ended the command, when the remote side reported one. */
  signal?: string;
  stdout: string;
  stderr: string;
  /** Why there is no exit status, e.g. 'unreachable: connect ECONNREFUSED', 'timeout after 10 s'. */
  error?: string;
  /** From asking to the result (the connection included when it had to be opened). */
  ms?: number;
}

/** A result that says how long it took (every SSH command's). */
export type TimedResult = CommandResult & { ms: number };
