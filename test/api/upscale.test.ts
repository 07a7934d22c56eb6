// `upscale` through the API, with tokens: the engine's pixels, a progress event per tile over
// graphql-ws and SSE, the source's infotext and AUTOMATIC1111's Extras keys, its own history that
// `generations` never shows, cancel, delete, ownership and quotas, and bad input that stores nothing.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { Engine } from '../../src/diffusion/engine.ts';
import { createUpscaler } from '../../src/diffusion/fixtures/index.ts';
import { quantize } from '../../src/diffusion/image.ts';
import { readImageInfo } from '../../src/diffusion/image-info.ts';
import { LIMITS } from '../../src/diffusion/limits.ts';
import { addPngText } from '../../src/diffusion/png-text.ts';
import { resolveUpscale } from '../../src/diffusion/upscale.ts';
import { listUpscalers } from '../../src/diffusion/upscalers.ts';
import { BLOCKER, collectSse, collectWs, startTestServer, waitForStatus, type TestServer } from '../helpers/api.ts';
import { initImagePng } from '../engine/helpers.ts';
import { withDeadline } from '../helpers/wait.ts';

const UPSCALE = 'mutation($input: UpscaleInput!) { upscale(input: $input) { id owner status method scale width height step totalSteps queuePosition } }';
const RESULT = `query($id: ID!) { upscale(id: $id) { status error method scale width height step totalSteps source { sha256 format }
  image { id url width height format parameters postprocessing upscale { id } } } }`;
const PROGRESS = 'subscription($id: ID!) { upscaleProgress(id: $id) { upscaleId status step totalSteps etaMs error } }';
const GENERATE = 'mutation($input: GenerateInput!) { generate(input: $input) { id } }';
const CREATE = 'mutation($name: String!, $scopes: [Scope!]!) { createToken(name: $name, scopes: $scopes) { token } }';
const PARAMETERS = 'a lighthouse\nNegative prompt: fog\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 200x70';

let api: TestServer;
let admin: string;
const tokens: Record<string, string> = {};
let source: Buffer;
let sourceUrl: string;

before(async () => {
  api = await startTestServer({ models: { demo: {} }, env: { SDQL_AUTH: 'tokens', SDQL_MAX_QUEUED: '3' } });
  admin = api.adminToken!;
  for (const [name, scopes] of [['alice', ['GENERATE']], ['bob', ['GENERATE']], ['reader', ['READ']]] as const) {
    tokens[name] = (await api.data(CREATE, { name, scopes }, admin)).createToken.token;
  }
  await createUpscaler(join(api.config.modelsDir, 'upscalers', 'fixture-x2.onnx'));
  // 200 × 70: two tiles of the model upscaler; with AUTOMATIC1111's parameters, as a generated image has.
  source = await addPngText(await initImagePng(200, 70, 3), { parameters: PARAMETERS });
  sourceUrl = `data:image/png;base64,${source.toString('base64')}`;
});
after(() => api?.close());

/** The database id in a global id (`Upscale:<id>`). */
const localOf = (globalId: string) => Buffer.from(globalId, 'base64').toString().split(':')[1];
const code = (result: { errors?: { extensions?: { code?: string } }[] }) => result.errors?.[0]?.extensions?.code;
const upscale = async (input: Record<string, unknown>, token = tokens.alice) => (await api.data(UPSCALE, { input: { image: { dataUrl: sourceUrl }, ...input } }, token)).upscale;

/** Waits for the upscale's status through its own subscription. */
async function waitForUpscale(id: string, status: string, token = tokens.alice): Promise<void> {
  const events = collectWs<{ upscaleProgress: { status: string } }>(api.wsClient(token), PROGRESS, { id });
  await events.next(`upscale ${id} becoming ${status}`, (e) => e.upscaleProgress.status === status);
}

async function finished(id: string, token = tokens.alice) {
  await waitForUpscale(id, 'SUCCEEDED', token);
  const { upscale: row } = await api.data(RESULT, { id }, token);
  const bytes = Buffer.from(await (await fetch(row.image.url)).arrayBuffer());
  return { ...row, bytes, pixels: await sharp(bytes).raw().toBuffer() };
}

/** Starts a generation that keeps the worker busy until canceled. */
async function block(): Promise<() => Promise<void>> {
  const { generate } = await api.data(GENERATE, { input: BLOCKER }, admin);
  await waitForStatus(api.server.url, generate.id, ['RUNNING'], undefined, admin);
  return async () => void (await api.data(`mutation($id: ID!) { cancelGeneration(id: $id) { id } }`, { id: generate.id }, admin));
}

test('a model upscaler: the engine\'s pixels, an event per tile to graphql-ws and SSE subscribers, the source\'s infotext with the Extras keys', async () => {
  const unblock = await block();
  const queued = await upscale({ upscaler: 'fixture-x2' });
  assert.deepEqual(
    { ...queued, id: undefined },
    { id: undefined, owner: 'alice', status: 'QUEUED', method: 'fixture-x2', scale: 2, width: 400, height: 140, step: 0, totalSteps: 2, queuePosition: 1 },
  );
  const ws = collectWs<{ upscaleProgress: any }>(api.wsClient(tokens.alice), PROGRESS, { id: queued.id });
  const sse = collectSse<{ upscaleProgress: any }>(api.server.url, PROGRESS, { id: queued.id }, tokens.alice);
  await ws.next('the state when subscribing');
  await sse.next('the state when subscribing');
  await unblock();
  for (const events of [await ws.done(), await sse.done()]) {
    const progress = events.map((e) => e.upscaleProgress);
    assert.ok(progress.every((e) => e.upscaleId === queued.id && e.totalSteps === 2 && e.error === null));
    const tiles = progress.filter((e) => e.status === 'RUNNING' && e.step > 0);
    assert.deepEqual(tiles.map((e) => e.step), [1, 2], 'an event per tile');
    assert.ok(tiles.every((e) => Number.isInteger(e.etaMs)));
    assert.deepEqual(progress.at(-1), { upscaleId: queued.id, status: 'SUCCEEDED', step: 2, totalSteps: 2, etaMs: null, error: null });
  }

  const done = await finished(queued.id);
  assert.equal(done.image.upscale.id, queued.id);
  assert.deepEqual([done.step, done.image.width, done.image.height, done.image.format, done.source.format], [2, 400, 140, 'png', 'png']);
  // The engine's own upscale of the same image.
  const engine = new Engine();
  try {
    const request = await resolveUpscale(source, { upscaler: 'fixture-x2' }, await listUpscalers(api.config.modelsDir));
    const expected = await engine.upscale({ ...request, image: source, upscalerPath: join(api.config.modelsDir, 'upscalers', 'fixture-x2.onnx') });
    assert.ok(done.pixels.equals(Buffer.from(quantize(expected))), 'the API\'s result is the engine\'s upscale');
  } finally {
    await engine.close();
  }

  const postprocessing = 'Postprocess upscale by: 2, Postprocess upscaler: fixture-x2';
  assert.equal(done.image.parameters, PARAMETERS);
  assert.equal(done.image.postprocessing, postprocessing);
  const texts = await readImageInfo(done.bytes);
  assert.deepEqual([texts.parameters, texts.postprocessing, texts.extras], [PARAMETERS, postprocessing, postprocessing], 'the PNG as AUTOMATIC1111\'s Extras write it');
  const { pngInfo } = await api.data(
    `query($id: ID!) { pngInfo(image: { imageId: $id }) { prompt seed postprocessing { key value } requestJson } }`,
    { id: done.image.id },
    tokens.alice,
  );
  assert.deepEqual([pngInfo.prompt, pngInfo.seed], ['a lighthouse', 5]);
  assert.deepEqual(pngInfo.postprocessing, [{ key: 'Postprocess upscale by', value: '2' }, { key: 'Postprocess upscaler', value: 'fixture-x2' }]);
  assert.deepEqual(pngInfo.requestJson, { upscaler: 'fixture-x2', scale: 2, image: { sha256: done.source.sha256 }, upscaleId: localOf(queued.id) });
});

test('lanczos at a scale of its own on an upscale\'s result; the history lists upscales, `generations` and Generation ids never do', async () => {
  const first = await finished((await upscale({ upscaler: 'lanczos' })).id);
  assert.deepEqual([first.scale, first.width, first.height, first.totalSteps], [2, 400, 140, 1]);
  assert.equal(first.image.postprocessing, 'Postprocess upscale by: 2, Postprocess upscaler: Lanczos');
  const second = await finished((await upscale({ image: { imageId: first.image.id }, upscaler: 'lanczos', scale: 1.5 })).id);
  assert.deepEqual([second.width, second.height], [600, 210]);
  const expected = await sharp(first.pixels, { raw: { width: 400, height: 140, channels: 3 } }).resize(600, 210, { fit: 'fill', kernel: 'lanczos3' }).raw().toBuffer();
  assert.ok(second.pixels.equals(expected), 'Lanczos 3 of the source');
  assert.equal(second.image.parameters, PARAMETERS, 'the infotext carried through two upscales');

  const { upscales } = await api.data('{ upscales(first: 2) { totalCount edges { node { id } } } }', {}, tokens.alice);
  assert.deepEqual(upscales.edges.map((e: any) => e.node.id), [second.image.upscale.id, first.image.upscale.id], 'newest first');
  assert.equal(upscales.totalCount, 3);
  const { generations } = await api.data('{ generations(first: 100) { totalCount edges { node { id } } } }', {}, admin);
  assert.ok(generations.edges.every((e: any) => e.node.id !== first.image.upscale.id) && generations.totalCount === 1, 'only the blocker is a generation');
  const upscaleId = first.image.upscale.id;
  const { node, image } = await api.data(`query($id: ID!, $image: ID!) { node(id: $id) { __typename id } image: node(id: $image) { __typename } }`, { id: upscaleId, image: first.image.id }, tokens.alice);
  assert.deepEqual([node, image], [{ __typename: 'Upscale', id: upscaleId }, { __typename: 'UpscaleImage' }]);
  const plainId = localOf(upscaleId);
  assert.equal(code(await api.gql(`{ generation(id: "${plainId}") { id } }`, {}, tokens.alice)), 'NOT_FOUND', 'an upscale is no generation');
  assert.equal(code(await api.gql(`{ generation(id: "${upscaleId}") { id } }`, {}, tokens.alice)), 'BAD_USER_INPUT');
  assert.equal(code(await api.gql(`mutation { deleteImage(id: "${first.image.id}") }`, {}, tokens.alice)), 'BAD_USER_INPUT', 'an UpscaleImage is no Image');
  assert.equal(code(await api.gql(`{ node(id: "${Buffer.from(`Generation:${plainId}`).toString('base64')}") { id } }`, {}, tokens.alice)), 'NOT_FOUND', 'no Generation node');
});

test('cancel a queued upscale; delete one with its files', async () => {
  const unblock = await block();
  const queued = await upscale({ upscaler: 'fixture-x2' });
  const { cancelUpscale } = await api.data('mutation($id: ID!) { cancelUpscale(id: $id) { id status } }', { id: queued.id }, tokens.alice);
  assert.deepEqual(cancelUpscale, { id: queued.id, status: 'CANCELED' });
  assert.equal(code(await api.gql('mutation($id: ID!) { cancelUpscale(id: $id) { id } }', { id: queued.id }, tokens.alice)), 'CONFLICT');
  await unblock();

  // Its own source, so that no other upscale keeps the input file.
  const own = `data:image/png;base64,${(await initImagePng(40, 30, 9)).toString('base64')}`;
  const done = await finished((await upscale({ image: { dataUrl: own }, upscaler: 'lanczos' })).id);
  const files = (dir: string) => (existsSync(join(api.config.dataDir, dir)) ? readdirSync(join(api.config.dataDir, dir), { recursive: true }).map(String) : []);
  const resultFile = files('images').find((f) => f.endsWith(`${localOf(done.image.upscale.id)}-0.png`));
  assert.ok(resultFile, 'the result file is written');
  const inputsBefore = files('inputs').length;
  const { deleteUpscale } = await api.data('mutation($id: ID!) { deleteUpscale(id: $id) }', { id: done.image.upscale.id }, tokens.alice);
  assert.equal(deleteUpscale, done.image.upscale.id);
  assert.ok(!files('images').includes(resultFile!), 'the result file is removed');
  assert.equal(files('inputs').length, inputsBefore - 1, 'the source file is removed');
  assert.equal(code(await api.gql(RESULT, { id: done.image.upscale.id }, tokens.alice)), 'NOT_FOUND');
});

test('tokens: GENERATE upscales, another owner finds nothing, ADMIN sees all, quotas count upscales', async () => {
  const unblock = await block();
  const mine = await upscale({ upscaler: 'lanczos' });
  for (const [query, what] of [
    [`{ upscale(id: "${mine.id}") { id } }`, 'upscale'],
    [`mutation { cancelUpscale(id: "${mine.id}") { id } }`, 'cancelUpscale'],
    [`mutation { deleteUpscale(id: "${mine.id}") }`, 'deleteUpscale'],
    [`{ node(id: "${mine.id}") { id } }`, 'node'],
  ]) {
    assert.equal(code(await api.gql(query, {}, tokens.bob)), 'NOT_FOUND', what);
  }
  await assert.rejects(collectWs(api.wsClient(tokens.bob), PROGRESS, { id: mine.id }).done(), /NOT_FOUND/);
  assert.deepEqual((await api.data('{ upscales(first: 10) { edges { node { id } } } }', {}, tokens.bob)).upscales.edges, []);
  assert.ok((await api.data('{ upscales(first: 10) { edges { node { id owner } } } }', {}, admin)).upscales.edges.some((e: any) => e.node.id === mine.id && e.node.owner === 'alice'));
  assert.equal(code(await api.gql(UPSCALE, { input: { image: { dataUrl: sourceUrl }, upscaler: 'lanczos' } }, tokens.reader)), 'FORBIDDEN');
  assert.equal(code(await api.gql(UPSCALE, { input: { image: { dataUrl: sourceUrl }, upscaler: 'lanczos', priority: 5 } }, tokens.alice)), 'FORBIDDEN');
  assert.ok((await api.data('{ upscales(first: 10) { totalCount } }', {}, tokens.reader)).upscales.totalCount === 0, 'READ reads');

  // SDQL_MAX_QUEUED is 3: one generation and two upscales fill alice's.
  await api.data(GENERATE, { input: { modelId: 'demo', prompt: 'x', steps: 1 } }, tokens.alice);
  await upscale({ upscaler: 'lanczos' });
  const refused = await api.gql(UPSCALE, { input: { image: { dataUrl: sourceUrl }, upscaler: 'lanczos' } }, tokens.alice);
  assert.equal(code(refused), 'QUOTA_EXCEEDED');
  assert.match(refused.errors![0].message, /"alice" has 3 generations and upscales queued/);
  await unblock();
  await withDeadline(waitForUpscale(mine.id, 'SUCCEEDED'), 'the queue draining');
});

test('bad input is BAD_USER_INPUT naming the field, with nothing stored and no file left', async () => {
  const count = async () => (await api.data('{ upscales(first: 1) { totalCount } }', {}, admin)).upscales.totalCount;
  const inputs = () => (existsSync(join(api.config.dataDir, 'inputs')) ? readdirSync(join(api.config.dataDir, 'inputs')).length : 0);
  const [before, filesBefore] = [await count(), inputs()];
  // A fresh image each time, so that a file left behind would show.
  const big = `data:image/png;base64,${(await initImagePng(1100, 1100, 4)).toString('base64')}`;
  for (const [input, message] of [
    [{ upscaler: 'nope' }, /upscaler: unknown upscaler "nope"/],
    [{ upscaler: 'lanczos', scale: 0.5 }, /scale must be from 1 to 8, got 0.5/],
    [{ upscaler: 'fixture-x2', scale: 9 }, /scale must be from 1 to 8, got 9/],
    [{ image: { dataUrl: big }, upscaler: 'lanczos', scale: 4 }, new RegExp(`scale: the result would be 4400×4400, more than ${LIMITS.maxInputPixels} pixels`)],
    [{ image: { dataUrl: `data:image/png;base64,${Buffer.from('not a png at all').toString('base64')}` }, upscaler: 'lanczos' }, /image could not be read/],
    [{ image: { dataUrl: 'data:text/plain;base64,aGk=' }, upscaler: 'lanczos' }, /image: the image data URL must look like/],
    [{ image: {}, upscaler: 'lanczos' }, /image: give exactly one of imageId, dataUrl and file/],
  ] as const) {
    const result = await api.gql(UPSCALE, { input: { image: { dataUrl: sourceUrl }, ...input } }, tokens.alice);
    assert.equal(code(result), 'BAD_USER_INPUT', JSON.stringify(result));
    assert.match(result.errors![0].message, message);
  }
  assert.equal(await count(), before);
  assert.equal(inputs(), filesBefore, 'a rejected request left an input file');
});
