// Errors a user can act on. Each carries the exit code the CLI returns and a
// one-line message naming the cause (config field path, node, file, URL).

export const ExitCode = {
  ok: 0,
  internal: 1,
  badInput: 2,
  testbed: 3,
  locked: 4,
  unreachable: 5,
  partial: 6,
  /** `doctor` found something that would block a real run. */
  blocked: 7,
  /** setup: reserved machines stayed KO after their redeploys; their VMs were re-planned. */
  machinesLost: 8,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export class KbError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCodeValue = ExitCode.internal,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad config, flags or input files. Nothing was changed. */
export class InputError extends KbError {
  constructor(message: string) {
    super(message, ExitCode.badInput);
  }
}

/** The testbed API refused or failed (4xx with its message, job in error, ...). */
export class TestbedError extends KbError {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message, ExitCode.testbed);
  }
}

/** The API could not be reached at all (connection refused, DNS, timeouts after retries). */
export class UnreachableError extends KbError {
  constructor(message: string) {
    super(message, ExitCode.unreachable);
  }
}

/** Another kabootstrap command holds the testbed's lock. */
export class LockedError extends KbError {
  constructor(message: string) {
    super(message, ExitCode.locked);
  }
}
