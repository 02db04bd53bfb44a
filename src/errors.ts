/**
 * Errors as values: a stable code, a message a person can act on, and where it happened.
 */
export class FlowgateError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** Where it happened: file:line:col for policy, node id for xDS, URL for the registry. */
    readonly where?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'FlowgateError';
  }

  /** `where: message`, the form printed to people. */
  override toString(): string {
    return this.where ? `${this.where}: ${this.message}` : this.message;
  }
}

/** The message of any thrown value, for logs. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
