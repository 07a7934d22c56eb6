// Configuration from the environment and command-line flags (flags win), validated once at start-up
// with messages that say what to change. Each setting is one entry of CONFIG_OPTIONS: add new ones
// there (and to the README's table, which test/server/config.test.ts checks).
import { join, resolve } from 'node:path';
import { LOG_LEVELS, type LogLevel } from './log.ts';

export interface Config {
  port: number;
  host: string;
  /** Absolute. Holds the embedded database (`db/`) and generated images. */
  dataDir: string;
  /** Absolute. One subfolder per model. */
  modelsDir: string;
  /** Absolute. LoRA .safetensors files. */
  lorasDir: string;
  /** Absolute. Textual-inversion embedding .safetensors files. */
  embeddingsDir: string;
  /** null: the embedded database (PGlite in `dataDir/db`). */
  databaseUrl: string | null;
  logLevel: LogLevel;
  /** null: events stay in this process. */
  redisUrl: string | null;
  /** What every Redis channel name of this deployment starts with. */
  redisPrefix: string;
  /** Whether this server runs generations itself (false: API only, with `sdql worker` processes elsewhere). */
  worker: boolean;
  /** Whether AUTOMATIC1111's REST API is served at /sdapi/v1/. */
  a1111Api: boolean;
  /** Seconds without a heartbeat after which a running generation counts as abandoned by a dead worker. */
  workerLeaseSeconds: number;
  /** Bytes of resident memory the models the engine keeps loaded between requests may hold; null: the engine's default. */
  modelCacheBytes: number | null;
  /** Bytes a UNet call's activations may take: larger batches run in sub-batches. Null: from the memory free at each request. */
  batchMemoryBytes: number | null;
  /** Images of more pixels than this run through the VAE in tiles. */
  vaeTilePixels: number;
  /** Origins (scheme://host[:port]) whose pages may call the API from a browser; empty: none but this server's own. */
  corsOrigins: string[];
  /** Host names accepted in the Host header besides loopback ones, when listening on a loopback address. */
  allowedHosts: string[];
  /** The server's URL as clients reach it (no trailing slash), for absolute URLs; null: see imageUrl. */
  publicUrl: string | null;
  /** `tokens`: every GraphQL request needs a token; `off`: everyone who reaches the server is the local admin. */
  auth: 'off' | 'tokens';
  /** QUEUED generations one owner may have at once. */
  maxQueued: number;
  /** Seconds an image URL is valid for at least, when URLs are signed (auth = tokens). */
  imageUrlTtlSeconds: number;
  /** onnxruntime execution providers, in order of preference. */
  executionProviders: string[];
  /** Providers of the submodels that do not run on `executionProviders`. */
  submodelProviders: Partial<Record<(typeof SUBMODELS)[number], string[]>>;
  /** Whether optimised graphs are saved under `dataDir/optimized` and loaded from there. */
  optimizedCache: boolean;
  /** Model ids loaded at start-up, in the background. */
  preload: string[];
  /** The Hugging Face Hub that `pullModel` and `sdql models pull` download from (no trailing slash). */
  hubUrl: string;
  /** A Hugging Face token, for private and gated repositories; null: none. */
  hfToken: string | null;
}

/** onnxruntime-node's execution providers (which of them this build and machine have is checked at start-up). */
export const EXECUTION_PROVIDERS = ['cpu', 'cuda', 'tensorrt', 'webgpu', 'dml', 'coreml'] as const;
const SUBMODELS = ['text_encoder', 'unet', 'vae_decoder', 'vae_encoder'] as const;
/** Names that stand for several submodels in SDQL_SUBMODEL_PROVIDERS. */
const SUBMODEL_GROUPS: Record<string, readonly (typeof SUBMODELS)[number][]> = { vae: ['vae_decoder', 'vae_encoder'] };

export class ConfigError extends Error {
  override name = 'ConfigError';
}

interface OptionSpec<K extends keyof Config = keyof Config> {
  key: K;
  env: string;
  /** Flag name without the leading dashes. */
  flag: string;
  /** As a user would write it; parsed like any other value. */
  default: string;
  /** What the help and the README say when `default` is derived from another setting. */
  defaultLabel?: string;
  description: string;
  parse: (raw: string, name: string) => Config[K];
}

const option = <K extends keyof Config>(spec: OptionSpec<K>) => spec as unknown as OptionSpec;

export const CONFIG_OPTIONS: readonly OptionSpec[] = [
  option({
    key: 'port',
    env: 'PORT',
    flag: 'port',
    default: '4000',
    description: 'HTTP port (0 picks a free one).',
    parse: (raw, name) => {
      const port = Number(raw);
      if (!/^\d+$/.test(raw.trim()) || port > 65535) throw new ConfigError(`${name} must be a port number from 0 to 65535, got "${raw}"`);
      return port;
    },
  }),
  option({
    key: 'host',
    env: 'HOST',
    flag: 'host',
    default: '127.0.0.1',
    description: 'Interface to listen on. Beyond loopback (e.g. 0.0.0.0), SDQL_AUTH=auto requires tokens.',
    parse: (raw, name) => {
      if (!raw.trim()) throw new ConfigError(`${name} must not be empty (use 127.0.0.1 for this machine only, 0.0.0.0 for every interface)`);
      return raw.trim();
    },
  }),
  option({
    key: 'dataDir',
    env: 'SDQL_DATA_DIR',
    flag: 'data-dir',
    default: './data',
    description: 'Embedded database (`db/`), generated images and converted checkpoints (`models-cache/`). Created if missing.',
    parse: (raw, name) => directory(raw, name),
  }),
  option({
    key: 'modelsDir',
    env: 'SDQL_MODELS_DIR',
    flag: 'models-dir',
    default: './models',
    description: 'Model folders (diffusers ONNX layout), one per model, and single-file checkpoints (*.safetensors). Created if missing.',
    parse: (raw, name) => directory(raw, name),
  }),
  option({
    key: 'lorasDir',
    env: 'SDQL_LORAS_DIR',
    flag: 'loras-dir',
    default: '',
    defaultLabel: '$SDQL_MODELS_DIR/loras',
    description: 'LoRA files (`*.safetensors`).',
    // Empty stands for the default, which depends on modelsDir: loadConfig fills it in.
    parse: (raw) => (raw.trim() ? resolve(raw.trim()) : ''),
  }),
  option({
    key: 'embeddingsDir',
    env: 'SDQL_EMBEDDINGS_DIR',
    flag: 'embeddings-dir',
    default: '',
    defaultLabel: '$SDQL_MODELS_DIR/embeddings',
    description: 'Textual-inversion embeddings (`*.safetensors`): the file name is the word that calls one up in a prompt.',
    // Empty stands for the default, as lorasDir.
    parse: (raw) => (raw.trim() ? resolve(raw.trim()) : ''),
  }),
  option({
    key: 'databaseUrl',
    env: 'DATABASE_URL',
    flag: 'database-url',
    default: '',
    description: 'Postgres connection string, e.g. `postgresql://user:password@host:5432/sdql`. Unset or empty: the embedded database.',
    parse: (raw, name) => databaseUrl(raw, name),
  }),
  option({
    key: 'redisUrl',
    env: 'REDIS_URL',
    flag: 'redis-url',
    default: '',
    description: 'Redis for events between processes (several API servers or `sdql worker` processes on one Postgres), e.g. `redis://127.0.0.1:6379`. Unset: events stay in this process.',
    parse: (raw, name) => {
      const value = raw.trim();
      if (!value) return null;
      if (!/^rediss?:\/\/[^/]/.test(value)) throw new ConfigError(`${name} must look like redis://host:6379, got "${redactUrl(value)}"`);
      return value;
    },
  }),
  option({
    key: 'redisPrefix',
    env: 'SDQL_REDIS_PREFIX',
    flag: 'redis-prefix',
    default: 'sdql:',
    description: 'What the names of sdql\'s Redis channels start with: give each deployment sharing one Redis its own.',
    parse: (raw, name) => {
      if (!/^[\w:.-]{1,64}$/.test(raw)) throw new ConfigError(`${name} must be 1 to 64 letters, digits or _ : . -, got "${raw}"`);
      return raw;
    },
  }),
  option({
    key: 'worker',
    env: 'SDQL_WORKER',
    flag: 'worker',
    default: 'true',
    description: 'Whether `sdql serve` runs generations itself. `false`: an API server only, for `sdql worker` processes on GPU hosts (needs `DATABASE_URL` and `REDIS_URL`).',
    parse: (raw, name) => boolean(raw, name),
  }),
  option({
    key: 'a1111Api',
    env: 'SDQL_A1111_API',
    flag: 'a1111-api',
    default: 'true',
    description: "Whether `sdql serve` also answers AUTOMATIC1111's REST API at `/sdapi/v1/` (see the README's section on it).",
    parse: (raw, name) => boolean(raw, name),
  }),
  option({
    key: 'workerLeaseSeconds',
    env: 'SDQL_WORKER_LEASE',
    flag: 'worker-lease',
    default: '30',
    description: 'Seconds without a heartbeat (sent every 5 s) after which a running generation on a shared Postgres counts as abandoned and runs again.',
    parse: (raw, name) => positiveNumber(raw, name),
  }),
  option({
    key: 'modelCacheBytes',
    env: 'SDQL_MODEL_CACHE_MB',
    flag: 'model-cache-mb',
    default: '',
    defaultLabel: '40 % of the memory',
    description: 'Megabytes of memory the models kept loaded between requests may hold (the least recently used are released), counted as the growth of resident memory each load caused. The default holds SD 1.5 and a LoRA set on a 24 GB machine.',
    parse: (raw, name) => (raw.trim() ? positiveNumber(raw, name) * 1024 * 1024 : null),
  }),
  option({
    key: 'batchMemoryBytes',
    env: 'SDQL_BATCH_MEMORY_MB',
    flag: 'batch-memory-mb',
    default: '',
    defaultLabel: 'three quarters of the free memory',
    description: 'Megabytes the UNet\'s activations may take in one call: a batch that needs more runs in sub-batches, of one image at least. Each image takes about 2.1 × heads × tokens² × 4 bytes per guidance pass for its UNet\'s largest attention: SD 1.x 1 GiB at 512×512, 5.3 GiB at 768×768; SDXL 1.3 GiB at 1024×1024. Unset: three quarters of the memory free when a request starts, its model loaded.',
    parse: (raw, name) => (raw.trim() ? positiveNumber(raw, name) * 1024 * 1024 : null),
  }),
  option({
    key: 'vaeTilePixels',
    env: 'SDQL_VAE_TILE_PIXELS',
    flag: 'vae-tile-pixels',
    default: String(768 * 768),
    description: 'Images of more pixels (width × height) than this go through the VAE decoder and encoder in tiles of 512 × 512 pixels with 128 pixels of context each side, bounding their memory. Exact for local layers; SD\'s VAE has group norms and one attention over the whole image, so tiles differ from the whole image by a fraction of a level on average (bench `memory`).',
    parse: (raw, name) => positiveNumber(raw, name),
  }),
  option({
    key: 'corsOrigins',
    env: 'SDQL_CORS_ORIGINS',
    flag: 'cors-origins',
    default: '',
    description: 'Comma-separated origins (e.g. `https://studio.example`) whose web pages may call the API and open its WebSocket. Empty: only pages this server serves (GraphiQL).',
    parse: (raw, name) => list(raw).map((value) => origin(value, name)),
  }),
  option({
    key: 'allowedHosts',
    env: 'SDQL_ALLOWED_HOSTS',
    flag: 'allowed-hosts',
    default: '',
    description: 'Comma-separated host names accepted in requests besides `localhost` and loopback addresses, when `HOST` is a loopback address (requests naming any other host are refused, against DNS rebinding).',
    parse: (raw, name) =>
      list(raw).map((value) => {
        if (!/^[a-z0-9.-]+$/i.test(value)) throw new ConfigError(`${name} must list host names without scheme or port, got "${value}"`);
        return value.toLowerCase();
      }),
  }),
  option({
    key: 'publicUrl',
    env: 'SDQL_PUBLIC_URL',
    flag: 'public-url',
    default: '',
    description: 'The URL clients reach this server at (e.g. `https://sdql.studio.example` behind a reverse proxy): image URLs start with it. Empty: the address it listens on, or paths alone when it listens on every interface.',
    parse: (raw, name) => {
      const value = raw.trim().replace(/\/+$/, '');
      if (!value) return null;
      let url: URL | undefined;
      try {
        url = new URL(value);
      } catch {
        // reported below
      }
      if (!url || !/^https?:$/.test(url.protocol) || url.search || url.hash) throw new ConfigError(`${name} must be an http(s) URL such as https://sdql.example.com, got "${raw}"`);
      return value;
    },
  }),
  option({
    key: 'auth',
    env: 'SDQL_AUTH',
    flag: 'auth',
    default: 'auto',
    description:
      '`tokens`: every GraphQL request needs a token (`Authorization: Bearer sdql_…`); `off`: no authentication, whoever reaches the port is the local admin; `auto`: `off` when `HOST` is a loopback address, `tokens` otherwise.',
    parse: (raw, name) => {
      const value = raw.trim().toLowerCase();
      if (!['auto', 'off', 'tokens'].includes(value)) throw new ConfigError(`${name} must be auto, off or tokens, got "${raw}"`);
      // `auto` depends on HOST: loadConfig resolves it.
      return value as Config['auth'];
    },
  }),
  option({
    key: 'maxQueued',
    env: 'SDQL_MAX_QUEUED',
    flag: 'max-queued',
    default: '100',
    description: 'Queued generations and upscales one owner (token) may have at once; `generate` or `upscale` beyond it is refused with QUOTA_EXCEEDED.',
    parse: (raw, name) => positiveInteger(raw, name),
  }),
  option({
    key: 'imageUrlTtlSeconds',
    env: 'SDQL_IMAGE_URL_TTL',
    flag: 'image-url-ttl',
    default: '86400',
    description: 'With tokens, image URLs are signed: seconds for which one stays valid at least (it is valid up to a tenth longer, so that it stays the same for a while and caches well).',
    parse: (raw, name) => positiveInteger(raw, name),
  }),
  option({
    key: 'executionProviders',
    env: 'SDQL_EXECUTION_PROVIDERS',
    flag: 'execution-providers',
    default: 'cpu',
    description: `Comma-separated onnxruntime execution providers in order of preference, e.g. \`cuda,cpu\` (nodes a provider cannot run go to the next): ${EXECUTION_PROVIDERS.join(', ')}. Each is tried at start-up; one that does not work stops the server with what to install (see the README's GPU section).`,
    parse: (raw, name) => providers(raw, name),
  }),
  option({
    key: 'submodelProviders',
    env: 'SDQL_SUBMODEL_PROVIDERS',
    flag: 'submodel-providers',
    default: '',
    description: `Submodels that run elsewhere than \`SDQL_EXECUTION_PROVIDERS\`: \`submodel=providers\` entries separated by semicolons, e.g. \`vae=cpu; text_encoder=cpu\`. Submodels: ${[...SUBMODELS, ...Object.keys(SUBMODEL_GROUPS)].join(', ')} (both VAE halves).`,
    parse: (raw, name) => {
      const placement: Config['submodelProviders'] = {};
      for (const entry of raw.split(';').map((e) => e.trim()).filter(Boolean)) {
        const [submodel, list, ...rest] = entry.split('=').map((p) => p.trim());
        const targets = SUBMODEL_GROUPS[submodel] ?? (SUBMODELS.includes(submodel as (typeof SUBMODELS)[number]) ? [submodel as (typeof SUBMODELS)[number]] : undefined);
        if (!targets || list === undefined || rest.length) {
          throw new ConfigError(`${name} must be entries like vae=cpu separated by semicolons, each naming one of ${[...SUBMODELS, ...Object.keys(SUBMODEL_GROUPS)].join(', ')}, got "${entry}"`);
        }
        for (const target of targets) placement[target] = providers(list, `${name} (${submodel})`);
      }
      return placement;
    },
  }),
  option({
    key: 'optimizedCache',
    env: 'SDQL_OPTIMIZED_CACHE',
    flag: 'optimized-cache',
    default: 'true',
    description: "Whether the graph onnxruntime optimises at a submodel's first load (per provider list, LoRA set and onnxruntime version) is saved under `$SDQL_DATA_DIR/optimized` and loaded from there later, in a fraction of the time. Each entry takes about the submodel's size on disk; delete the folder to reclaim it.",
    parse: (raw, name) => boolean(raw, name),
  }),
  option({
    key: 'preload',
    env: 'SDQL_PRELOAD',
    flag: 'preload',
    default: '',
    description: 'Comma-separated model ids loaded at start-up, in the background, so that the first generation does not wait for the load; `system { engine { models } }` shows their progress.',
    parse: (raw) => [...new Set(list(raw))],
  }),
  option({
    key: 'hubUrl',
    env: 'HF_ENDPOINT',
    flag: 'hf-endpoint',
    default: 'https://huggingface.co',
    description: 'The Hugging Face Hub that `pullModel` and `sdql models pull` download from (a mirror, or a private Hub).',
    parse: (raw, name) => {
      const value = raw.trim().replace(/\/+$/, '');
      if (!/^https?:\/\/[^/]/.test(value)) throw new ConfigError(`${name} must be an http(s) URL like https://huggingface.co, got "${redactUrl(value)}"`);
      return value;
    },
  }),
  option({
    key: 'hfToken',
    env: 'HF_TOKEN',
    flag: 'hf-token',
    default: '',
    description: 'A Hugging Face access token (read scope) for private and gated repositories; prefer the variable to the flag, which other users can see.',
    parse: (raw) => raw.trim() || null,
  }),
  option({
    key: 'logLevel',
    env: 'LOG_LEVEL',
    flag: 'log-level',
    default: 'info',
    description: `One of ${LOG_LEVELS.join(', ')}. Logs are JSON lines unless stdout is a terminal.`,
    parse: (raw, name) => {
      const level = raw.trim().toLowerCase();
      if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new ConfigError(`${name} must be one of ${LOG_LEVELS.join(', ')}, got "${raw}"`);
      return level as LogLevel;
    },
  }),
];

function positiveNumber(raw: string, name: string): number {
  const value = Number(raw.trim());
  if (!raw.trim() || !Number.isFinite(value) || value <= 0) throw new ConfigError(`${name} must be a positive number, got "${raw}"`);
  return value;
}

function positiveInteger(raw: string, name: string): number {
  const value = Number(raw.trim());
  if (!/^\d+$/.test(raw.trim()) || value < 1 || !Number.isSafeInteger(value)) throw new ConfigError(`${name} must be a positive whole number, got "${raw}"`);
  return value;
}

const LOOPBACK_NAMES = new Set(['localhost', '::1', '[::1]']);

/** Whether a host name or address is this machine only (localhost, 127.x.x.x, ::1). */
export function isLoopback(hostname: string): boolean {
  const name = hostname.toLowerCase();
  return LOOPBACK_NAMES.has(name) || name.endsWith('.localhost') || /^127(\.\d{1,3}){3}$/.test(name);
}

function providers(raw: string, name: string): string[] {
  const names = list(raw).map((p) => p.toLowerCase());
  if (!names.length) throw new ConfigError(`${name} must name at least one execution provider (${EXECUTION_PROVIDERS.join(', ')})`);
  for (const provider of names) {
    if (!(EXECUTION_PROVIDERS as readonly string[]).includes(provider)) throw new ConfigError(`${name}: unknown execution provider "${provider}"; onnxruntime-node has ${EXECUTION_PROVIDERS.join(', ')}`);
  }
  if (new Set(names).size !== names.length) throw new ConfigError(`${name} names a provider twice: "${raw}"`);
  return names;
}

function list(raw: string): string[] {
  return raw
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
}

/** scheme://host[:port], as browsers send it in the Origin header. */
function origin(value: string, name: string): string {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    // reported below
  }
  if (!url || url.origin === 'null' || url.origin !== value.replace(/\/$/, '')) throw new ConfigError(`${name} must list origins such as https://studio.example or http://localhost:3000, got "${value}"`);
  return url.origin;
}

function boolean(raw: string, name: string): boolean {
  const value = raw.trim().toLowerCase();
  if (!['true', 'false', '1', '0'].includes(value)) throw new ConfigError(`${name} must be true or false, got "${raw}"`);
  return value === 'true' || value === '1';
}

function directory(raw: string, name: string): string {
  if (!raw.trim()) throw new ConfigError(`${name} must not be empty`);
  return resolve(raw.trim());
}

function databaseUrl(raw: string, name: string): string | null {
  const value = raw.trim();
  if (!value) return null;
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    // reported below
  }
  if (!url || (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') || !url.hostname) {
    throw new ConfigError(
      `${name} must be a Postgres URL like postgresql://user:password@localhost:5432/sdql (or empty for the embedded database), got "${redactUrl(value)}"`,
    );
  }
  return value;
}

/** The URL with its password replaced, for messages and logs. */
export function redactUrl(value: string): string {
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@/]*@/i, '$1****@');
}

/** Options for node:util's parseArgs, keyed by flag name. */
export function configArgs(): Record<string, { type: 'string' }> {
  return Object.fromEntries(CONFIG_OPTIONS.map((o) => [o.flag, { type: 'string' as const }]));
}

/** Where descriptions start in `--help` output. */
export const HELP_COLUMN = 26;

/** `--help` lines for the configuration flags. */
export function configHelp(): string {
  return CONFIG_OPTIONS.map((o) => {
    const flag = `  --${o.flag} <value>`.padEnd(HELP_COLUMN);
    const fallback = o.defaultLabel || o.default ? ` Default: ${o.defaultLabel ?? o.default}.` : '';
    return `${flag}${o.env}. ${o.description}${fallback}`;
  }).join('\n');
}

/** Reads every setting from `flags` (parseArgs values), else `env`, else its default. Throws ConfigError. */
export function loadConfig(flags: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = process.env): Config {
  const config: Partial<Record<keyof Config, unknown>> = {};
  for (const o of CONFIG_OPTIONS) {
    const flag = flags[o.flag];
    if (typeof flag === 'string') config[o.key] = o.parse(flag, `--${o.flag}`);
    else if (env[o.env] !== undefined) config[o.key] = o.parse(env[o.env] as string, o.env);
    else config[o.key] = o.parse(o.default, `${o.env} (default)`);
  }
  config.lorasDir ||= join(config.modelsDir as string, 'loras');
  config.embeddingsDir ||= join(config.modelsDir as string, 'embeddings');
  if (config.auth === 'auto') config.auth = isLoopback(config.host as string) ? 'off' : 'tokens';
  return config as Config;
}
