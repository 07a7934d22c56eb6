import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { CONFIG_OPTIONS, ConfigError, loadConfig, redactUrl } from '../../src/config.ts';

test('defaults: loopback, port 4000, ./data, ./models, embedded database', () => {
  assert.deepEqual(loadConfig({}, {}), {
    port: 4000,
    host: '127.0.0.1',
    dataDir: resolve('data'),
    modelsDir: resolve('models'),
    lorasDir: resolve('models', 'loras'),
    embeddingsDir: resolve('models', 'embeddings'),
    databaseUrl: null,
    logLevel: 'info',
    redisUrl: null,
    redisPrefix: 'sdql:',
    worker: true,
    a1111Api: true,
    workerLeaseSeconds: 30,
    modelCacheBytes: null,
    batchMemoryBytes: null,
    vaeTilePixels: 768 * 768,
    corsOrigins: [],
    allowedHosts: [],
    publicUrl: null,
    auth: 'off',
    maxQueued: 100,
    imageUrlTtlSeconds: 86400,
    executionProviders: ['cpu'],
    submodelProviders: {},
    optimizedCache: true,
    preload: [],
    hubUrl: 'https://huggingface.co',
    hfToken: null,
  });
});

test('the environment sets values and flags override it', () => {
  const env = {
    PORT: '5000',
    HOST: '0.0.0.0',
    SDQL_DATA_DIR: '/srv/sdql',
    SDQL_MODELS_DIR: '/srv/models',
    DATABASE_URL: 'postgresql://sdql:pw@db:5432/sdql',
    LOG_LEVEL: 'DEBUG',
    REDIS_URL: 'redis://cache:6379',
    SDQL_REDIS_PREFIX: 'studio-a:',
    SDQL_WORKER: 'false',
    SDQL_A1111_API: 'false',
    SDQL_WORKER_LEASE: '12.5',
    SDQL_MODEL_CACHE_MB: '2048',
    SDQL_BATCH_MEMORY_MB: '512',
    SDQL_VAE_TILE_PIXELS: '1048576',
    SDQL_CORS_ORIGINS: 'https://studio.example, http://localhost:3000/',
    SDQL_ALLOWED_HOSTS: 'SDQL.lan,gpu-box',
    SDQL_PUBLIC_URL: 'https://sdql.example/',
    SDQL_MAX_QUEUED: '20',
    SDQL_IMAGE_URL_TTL: '3600',
    SDQL_EXECUTION_PROVIDERS: 'CUDA, cpu',
    SDQL_SUBMODEL_PROVIDERS: 'vae=cpu; text_encoder = webgpu,cpu;',
    SDQL_OPTIMIZED_CACHE: 'false',
    SDQL_PRELOAD: 'sd15, tiny,sd15',
    HF_ENDPOINT: 'https://hf-mirror.example/',
    HF_TOKEN: 'hf_abc',
  };
  const config = loadConfig({ port: '5001', 'loras-dir': '/srv/loras' }, env);
  assert.deepEqual(config, {
    port: 5001,
    host: '0.0.0.0',
    dataDir: '/srv/sdql',
    modelsDir: '/srv/models',
    lorasDir: '/srv/loras',
    embeddingsDir: '/srv/models/embeddings',
    databaseUrl: 'postgresql://sdql:pw@db:5432/sdql',
    logLevel: 'debug',
    redisUrl: 'redis://cache:6379',
    redisPrefix: 'studio-a:',
    worker: false,
    a1111Api: false,
    workerLeaseSeconds: 12.5,
    modelCacheBytes: 2048 * 1024 * 1024,
    batchMemoryBytes: 512 * 1024 * 1024,
    vaeTilePixels: 1024 * 1024,
    corsOrigins: ['https://studio.example', 'http://localhost:3000'],
    allowedHosts: ['sdql.lan', 'gpu-box'],
    publicUrl: 'https://sdql.example',
    // auto: HOST is not a loopback address.
    auth: 'tokens',
    maxQueued: 20,
    imageUrlTtlSeconds: 3600,
    executionProviders: ['cuda', 'cpu'],
    submodelProviders: { vae_decoder: ['cpu'], vae_encoder: ['cpu'], text_encoder: ['webgpu', 'cpu'] },
    optimizedCache: false,
    preload: ['sd15', 'tiny'],
    hubUrl: 'https://hf-mirror.example',
    hfToken: 'hf_abc',
  });
  assert.equal(loadConfig({}, { DATABASE_URL: '' }).databaseUrl, null);
  assert.equal(loadConfig({}, { SDQL_MODELS_DIR: '/m' }).lorasDir, join('/m', 'loras'));
  assert.equal(loadConfig({}, { SDQL_MODELS_DIR: '/m' }).embeddingsDir, join('/m', 'embeddings'));
  assert.equal(loadConfig({ 'embeddings-dir': 'emb' }, { SDQL_EMBEDDINGS_DIR: '/e' }).embeddingsDir, resolve('emb'));
  assert.equal(loadConfig({}, { SDQL_EMBEDDINGS_DIR: '/e' }).embeddingsDir, '/e');
  assert.equal(loadConfig({ port: '0' }, {}).port, 0);
});

test('SDQL_AUTH=auto: off on a loopback HOST, tokens beyond it; off and tokens as given', () => {
  for (const host of ['127.0.0.1', 'localhost', '::1', '127.0.0.2']) assert.equal(loadConfig({}, { HOST: host }).auth, 'off', host);
  for (const host of ['0.0.0.0', '::', '192.168.1.20', 'sdql.lan']) assert.equal(loadConfig({}, { HOST: host }).auth, 'tokens', host);
  assert.equal(loadConfig({}, { HOST: '0.0.0.0', SDQL_AUTH: 'off' }).auth, 'off');
  assert.equal(loadConfig({ auth: 'tokens' }, { SDQL_AUTH: 'auto' }).auth, 'tokens');
});

test('invalid values fail with a message naming the setting and the expected form', () => {
  const cases: [Record<string, unknown>, NodeJS.ProcessEnv, RegExp][] = [
    [{}, { PORT: '70000' }, /^PORT must be a port number from 0 to 65535, got "70000"$/],
    [{ port: '-1' }, {}, /^--port must be a port number/],
    [{ port: '4000.5' }, {}, /^--port must be a port number/],
    [{}, { HOST: ' ' }, /^HOST must not be empty/],
    [{}, { LOG_LEVEL: 'loud' }, /^LOG_LEVEL must be one of debug, info, warn, error, silent, got "loud"$/],
    [{}, { SDQL_DATA_DIR: '' }, /^SDQL_DATA_DIR must not be empty$/],
    [{}, { DATABASE_URL: 'localhost:5432/sdql' }, /^DATABASE_URL must be a Postgres URL like postgresql:\/\/user:password@localhost:5432\/sdql/],
    [{ 'database-url': 'mysql://u:hunter2@h/db' }, {}, /^--database-url must be a Postgres URL .*got "mysql:\/\/u:\*\*\*\*@h\/db"$/],
    [{}, { REDIS_URL: 'localhost:6379' }, /^REDIS_URL must look like redis:\/\/host:6379/],
    [{}, { SDQL_REDIS_PREFIX: 'a b' }, /^SDQL_REDIS_PREFIX must be 1 to 64 letters/],
    [{}, { HF_ENDPOINT: 'huggingface.co' }, /^HF_ENDPOINT must be an http\(s\) URL like https:\/\/huggingface.co, got "huggingface.co"$/],
    [{}, { SDQL_WORKER: 'maybe' }, /^SDQL_WORKER must be true or false/],
    [{}, { SDQL_WORKER_LEASE: '0' }, /^SDQL_WORKER_LEASE must be a positive number/],
    [{ 'model-cache-mb': 'lots' }, {}, /^--model-cache-mb must be a positive number/],
    [{}, { SDQL_CORS_ORIGINS: '*' }, /^SDQL_CORS_ORIGINS must list origins such as https:\/\/studio.example/],
    [{}, { SDQL_CORS_ORIGINS: 'https://studio.example/app' }, /^SDQL_CORS_ORIGINS must list origins/],
    [{}, { SDQL_ALLOWED_HOSTS: 'http://sdql.lan' }, /^SDQL_ALLOWED_HOSTS must list host names without scheme or port/],
    [{}, { SDQL_PUBLIC_URL: 'sdql.example' }, /^SDQL_PUBLIC_URL must be an http\(s\) URL/],
    [{}, { SDQL_AUTH: 'yes' }, /^SDQL_AUTH must be auto, off or tokens, got "yes"$/],
    [{}, { SDQL_MAX_QUEUED: '0' }, /^SDQL_MAX_QUEUED must be a positive whole number/],
    [{ 'image-url-ttl': '1.5' }, {}, /^--image-url-ttl must be a positive whole number/],
    [{}, { SDQL_EXECUTION_PROVIDERS: 'gpu' }, /^SDQL_EXECUTION_PROVIDERS: unknown execution provider "gpu"; onnxruntime-node has cpu, cuda, tensorrt, webgpu, dml, coreml$/],
    [{}, { SDQL_EXECUTION_PROVIDERS: ' , ' }, /^SDQL_EXECUTION_PROVIDERS must name at least one execution provider/],
    [{ 'execution-providers': 'cuda,cpu,cuda' }, {}, /^--execution-providers names a provider twice/],
    [{}, { SDQL_SUBMODEL_PROVIDERS: 'decoder=cpu' }, /^SDQL_SUBMODEL_PROVIDERS must be entries like vae=cpu .*got "decoder=cpu"$/],
    [{}, { SDQL_SUBMODEL_PROVIDERS: 'vae:cpu' }, /^SDQL_SUBMODEL_PROVIDERS must be entries like vae=cpu/],
    [{}, { SDQL_SUBMODEL_PROVIDERS: 'unet=cuda,cpu,vae=cpu' }, /^SDQL_SUBMODEL_PROVIDERS must be entries like vae=cpu/],
    [{}, { SDQL_SUBMODEL_PROVIDERS: 'vae=tpu' }, /^SDQL_SUBMODEL_PROVIDERS \(vae\): unknown execution provider "tpu"/],
    [{}, { SDQL_OPTIMIZED_CACHE: 'sometimes' }, /^SDQL_OPTIMIZED_CACHE must be true or false/],
  ];
  for (const [flags, env, expected] of cases) {
    assert.throws(() => loadConfig(flags, env), (error: Error) => error instanceof ConfigError && expected.test(error.message));
  }
});

test('redactUrl hides passwords only', () => {
  assert.equal(redactUrl('postgresql://sdql:s3cr%40t@db:5432/x'), 'postgresql://sdql:****@db:5432/x');
  assert.equal(redactUrl('postgresql://sdql@db/x'), 'postgresql://sdql@db/x');
});

test('the README documents every setting with its flag and default', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  for (const o of CONFIG_OPTIONS) {
    const row = readme.split('\n').find((line) => line.startsWith(`| \`${o.env}\``));
    assert.ok(row, `README.md has no configuration row for ${o.env}`);
    assert.ok(row.includes(`\`--${o.flag}\``), `README row of ${o.env} lacks --${o.flag}`);
    const fallback = o.defaultLabel ?? o.default;
    if (fallback) assert.ok(row.includes(`\`${fallback}\``), `README row of ${o.env} lacks its default ${fallback}`);
  }
});
