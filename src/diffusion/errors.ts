// Errors the engine raises for problems the caller can fix. Layers above map `code` onto their
// own error vocabulary (GraphQL `extensions.code`, CLI exit messages); anything else is a bug.

export type DiffusionErrorCode =
  /** A request parameter is out of range or inconsistent with the model. */
  | 'BAD_USER_INPUT'
  /** The model folder is missing files or holds files that do not fit together. */
  | 'MODEL_INVALID'
  /** The request was aborted through its AbortSignal. */
  | 'ABORTED';

export class DiffusionError extends Error {
  override name = 'DiffusionError';
  constructor(
    readonly code: DiffusionErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export const badInput = (message: string) => new DiffusionError('BAD_USER_INPUT', message);
export const invalidModel = (message: string, cause?: unknown) => new DiffusionError('MODEL_INVALID', message, { cause });
