/** A database that cannot be used, with a one-line reason for the user. */
export class DatabaseUnavailableError extends Error {
  override name = 'DatabaseUnavailableError';
}
