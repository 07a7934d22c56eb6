// Structured logs: one line per event on stdout — JSON when stdout is not a terminal (for collectors),
// `time LEVEL message key=value` when it is (for people). Fields bound with withLogFields (a request
// id) appear on every line logged inside that call, however deep.
import { AsyncLocalStorage } from 'node:async_hooks';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line (a request id, a component name). */
  child(fields: LogFields): Logger;
}

interface Sink {
  level: LogLevel;
  json: boolean;
  write: (line: string) => void;
}

const sink: Sink = {
  level: 'info',
  json: !process.stdout.isTTY,
  write: (line) => process.stdout.write(`${line}\n`),
};

/** Sets the level and format of every logger; `write` replaces stdout (tests capture lines with it). */
export function configureLogging(options: Partial<Sink>): void {
  Object.assign(sink, options);
}

const rank = (level: LogLevel) => LOG_LEVELS.indexOf(level);

const scope = new AsyncLocalStorage<LogFields>();

/** Runs `fn` with `fields` added to every line it logs, including from callbacks and promises it starts. */
export function withLogFields<T>(fields: LogFields, fn: () => T): T {
  return scope.run({ ...scope.getStore(), ...fields }, fn);
}

/** Errors become plain objects: JSON.stringify turns an Error into {}. */
function plain(value: unknown): unknown {
  if (!(value instanceof Error)) return value;
  const code = (value as { code?: unknown }).code;
  return { name: value.name, message: value.message, ...(code === undefined ? {} : { code }), stack: value.stack };
}

function format(level: LogLevel, msg: string, fields: LogFields): string {
  const time = new Date().toISOString();
  if (sink.json) {
    const entries = Object.entries(fields).map(([k, v]) => [k, plain(v)]);
    return JSON.stringify({ time, level, msg, ...Object.fromEntries(entries) }, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
  }
  let extra = '';
  let stack = '';
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    if (value instanceof Error) {
      extra += ` ${key}=${JSON.stringify(value.message)}`;
      if (sink.level === 'debug' && value.stack) stack = `\n${value.stack}`;
    } else {
      extra += ` ${key}=${typeof value === 'string' && !/[\s"=]/.test(value) ? value : JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}`;
    }
  }
  return `${time.slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${msg}${extra}${stack}`;
}

function createLogger(bound: LogFields): Logger {
  const emit = (level: LogLevel) => (msg: string, fields?: LogFields) => {
    if (rank(level) < rank(sink.level)) return;
    sink.write(format(level, msg, { ...scope.getStore(), ...bound, ...fields }));
  };
  return {
    debug: emit('debug'),
    info: emit('info'),
    warn: emit('warn'),
    error: emit('error'),
    child: (fields) => createLogger({ ...bound, ...fields }),
  };
}

export const log: Logger = createLogger({});
