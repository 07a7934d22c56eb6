// Structured logs through pino: one line per event on stdout, JSON when stdout is not a terminal (for
// collectors), pino-pretty's one-line form when it is (for people). Fields bound with withLogFields (a
// request id) appear on every line logged inside that call, however deep. Everything is written
// synchronously on this thread (no pino transport, hence no worker thread to flush at exit).
import { AsyncLocalStorage } from 'node:async_hooks';
import { pino, stdSerializers, type DestinationStream, type Logger as PinoLogger } from 'pino';
import { prettyFactory } from 'pino-pretty';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line (a component name). */
  child(fields: LogFields): Logger;
}

interface LoggingOptions {
  level: LogLevel;
  /** JSON lines; otherwise pino-pretty's one-line form. */
  json: boolean;
  /** Receives each line without its newline; replaces stdout (tests capture lines with it). */
  write: ((line: string) => void) | undefined;
}

const options: LoggingOptions = { level: 'info', json: !process.stdout.isTTY, write: undefined };

/** Credentials never reach a log line: at the top level, one object down, or in a nested `headers` (`req.headers.authorization`). */
const REDACTED = ['authorization', 'cookie', 'set-cookie', 'x-api-key', 'token', 'password'].flatMap((key) => [
  `["${key}"]`,
  `*["${key}"]`,
  `*.headers["${key}"]`,
]);

const scope = new AsyncLocalStorage<LogFields>();

/** Runs `fn` with `fields` added to every line it logs, including from callbacks and promises it starts. */
export function withLogFields<T>(fields: LogFields, fn: () => T): T {
  return scope.run({ ...scope.getStore(), ...fields }, fn);
}

function destination(): DestinationStream {
  const { json, write } = options;
  if (json && !write) return pino.destination({ dest: 1, sync: true });
  const out = write ?? ((line: string) => process.stdout.write(`${line}\n`));
  // prettyFactory formats a JSON line in place: pino-pretty's own stream would pipe asynchronously.
  const pretty = json ? undefined : prettyFactory({ colorize: !write && process.stdout.isTTY, singleLine: true, translateTime: 'SYS:HH:MM:ss.l' });
  return { write: (line: string) => out((pretty ? pretty(line) : line).trimEnd()) };
}

function createRoot(): PinoLogger {
  return pino(
    {
      level: options.level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // A copy: pino merges each line's fields into the object the mixin returns.
      mixin: () => ({ ...scope.getStore() }),
      serializers: { err: stdSerializers.errWithCause },
      redact: REDACTED,
    },
    destination(),
  );
}

let root = createRoot();

/** Sets the level, format and destination of every logger. */
export function configureLogging(changes: Partial<LoggingOptions>): void {
  Object.assign(options, changes);
  root = createRoot();
}

function createLogger(bound: LogFields): Logger {
  // Our call sites read (message, fields); pino's methods take (fields, message).
  const method = (level: Exclude<LogLevel, 'silent'>) => (msg: string, fields?: LogFields) => root[level]({ ...bound, ...fields }, msg);
  return {
    debug: method('debug'),
    info: method('info'),
    warn: method('warn'),
    error: method('error'),
    child: (fields) => createLogger({ ...bound, ...fields }),
  };
}

export const log: Logger = createLogger({});
