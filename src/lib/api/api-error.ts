// The one error type the scheduler and its helpers throw: a refusal with the HTTP status
// the API answers it with.

export class SchedulerError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'SchedulerError';
  }
}
