// Generations through the public API on a listening server: submit, follow every step over
// graphql-ws and SSE, fetch the images, cancel, the queue's order, history and restarts.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { Engine } from '../../src/diffusion/engine.ts';
import { quantize } from '../../src/diffusion/image.ts';
import { inspectModelFolder } from '../../src/diffusion/model-folder.ts';
import { resolveRequest } from '../../src/diffusion/request.ts';
import { readPngText } from '../../src/diffusion/png-text.ts';
import { BLOCKER, collectSse, collectWs, startTestServer, waitForStatus, type TestServer } from '../helpers/api.ts';
import { compareImages } from '../helpers/reference.ts';

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id status seed width height steps scheduler queuePosition } }`;
const PROGRESS = `subscription($id: ID!) { generationProgress(id: $id) { generationId status step totalSteps imageIndex etaMs preview { dataUrl width height } error } }`;
const GENERATION = `query($id: ID!) { generation(id: $id) { id status step totalSteps error durationMs startedAt queuePosition seed
  images { id url index width height seed format bytes sha256 infotext } } }`;

type Generation = { id: string; status: string; seed: number; queuePosition: number | null; startedAt: string | null; images: any[]; [k: string]: any };

let api: TestServer;

async function generate(input: Record<string, unknown>): Promise<Generation> {
  return (await api.data<{ generate: Generation }>(GENERATE, { input })).generate;
}

/** The generation once it has one of `statuses`. */
async function waitFor(id: string, statuses: string[]): Promise<Generation> {
  await waitForStatus(api.server.url, id, statuses);
  return (await api.data<{ generation: Generation }>(GENERATION, { id })).generation;
}

before(async () => {
  api = await startTestServer({ models: { demo: {} } });
});
after(() => api.close());

describe('a generation, end to end', () => {
  test('generate → an event with a preview for every step → SUCCEEDED → a PNG with its parameters, equal to the engine', async () => {
    const busy = await generate(BLOCKER);
    const input = { modelId: 'demo', prompt: 'a lighthouse at dusk', negativePrompt: 'fog', steps: 6, seed: 1234, scheduler: 'EULER_A', guidanceScale: 6 };
    const queued = await generate(input);
    assert.equal(queued.status, 'QUEUED');
    assert.equal(queued.queuePosition, 1);
    const ws = collectWs<{ generationProgress: any }>(api.wsClient(), PROGRESS, { id: queued.id });
    await ws.next('the state when subscribing');
    await api.data(`mutation($id: ID!) { cancelGeneration(id: $id) { id } }`, { id: busy.id });
    const events = (await ws.done()).map((e) => e.generationProgress);

    assert.equal(events[0].status, 'QUEUED', 'the first event is the state when subscribing');
    const steps = events.filter((e) => e.status === 'RUNNING' && e.step > 0);
    assert.deepEqual(steps.map((e) => e.step), [1, 2, 3, 4, 5, 6]);
    for (const e of steps) {
      assert.equal(e.totalSteps, 6);
      assert.match(e.preview.dataUrl, /^data:image\/jpeg;base64,/);
      const preview = await sharp(Buffer.from(e.preview.dataUrl.split(',')[1], 'base64')).metadata();
      assert.deepEqual([preview.width, preview.height], [e.preview.width, e.preview.height]);
      assert.ok(e.preview.width <= 256 && e.preview.height <= 256);
    }
    assert.equal(events.at(-1).status, 'SUCCEEDED');

    const done = await waitFor(queued.id, ['SUCCEEDED']);
    assert.equal(done.images.length, 1);
    const [image] = done.images;
    assert.equal(image.seed, 1234);
    const response = await fetch(image.url);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'image/png');
    assert.equal(response.headers.get('etag'), `"${image.sha256}"`);
    const png = Buffer.from(await response.arrayBuffer());
    assert.equal((await fetch(image.url, { headers: { 'if-none-match': `"${image.sha256}"` } })).status, 304);
    const texts = readPngText(png);
    assert.equal(texts.parameters, image.infotext);
    assert.match(texts.parameters, /^a lighthouse at dusk\nNegative prompt: fog\nSteps: 6, Sampler: Euler a, Schedule type: DDIM, CFG scale: 6, Seed: 1234, Size: \d+x\d+, Model hash: [0-9a-f]{10}, Model: demo$/);
    assert.equal(JSON.parse(texts.sdql).prompt, 'a lighthouse at dusk');

    // The same request straight through the engine gives the same pixels.
    const model = await inspectModelFolder(join(api.config.modelsDir, 'demo'));
    const engine = new Engine();
    try {
      const direct = await engine.run(model, await resolveRequest(model, input));
      const served = await sharp(png).raw().toBuffer();
      const { maxDiff } = compareImages(quantize(direct.images[0].image), served);
      assert.equal(maxDiff, 0);
    } finally {
      await engine.close();
    }
  });

  test('subscriptions over SSE see the same stream; a late subscriber gets the final state at once', async () => {
    const busy = await generate(BLOCKER);
    const queued = await generate({ modelId: 'demo', prompt: 'sse', steps: 3, seed: 5 });
    const sse = collectSse<{ generationProgress: any }>(api.server.url, PROGRESS, { id: queued.id });
    assert.equal((await sse.next('the state when subscribing over SSE')).generationProgress.status, 'QUEUED');
    await api.data(`mutation($id: ID!) { cancelGeneration(id: $id) { id } }`, { id: busy.id });
    const events = (await sse.done()).map((e) => e.generationProgress);
    assert.deepEqual(events.filter((e) => e.step > 0 && e.status === 'RUNNING').map((e) => e.step), [1, 2, 3]);
    assert.equal(events.at(-1).status, 'SUCCEEDED');
    const late = await collectWs<{ generationProgress: any }>(api.wsClient(), PROGRESS, { id: queued.id }).done();
    assert.deepEqual(late.map((e) => e.generationProgress.status), ['SUCCEEDED']);
  });
});

describe('cancel', () => {
  test('a queued generation is CANCELED at once; a running one at its next step', async () => {
    const running = await generate(BLOCKER);
    const queued = await generate({ modelId: 'demo', prompt: 'never runs', steps: 2 });
    const canceled = await api.data<{ cancelGeneration: Generation }>(`mutation($id: ID!) { cancelGeneration(id: $id) { id status } }`, { id: queued.id });
    assert.equal(canceled.cancelGeneration.status, 'CANCELED');
    await waitFor(running.id, ['RUNNING']);
    const stream = collectWs<{ generationProgress: any }>(api.wsClient(), PROGRESS, { id: running.id });
    await stream.next('the state when subscribing');
    const stopped = await api.data<{ cancelGeneration: Generation }>(`mutation($id: ID!) { cancelGeneration(id: $id) { id status } }`, { id: running.id });
    assert.equal(stopped.cancelGeneration.status, 'CANCELED');
    const events = await stream.done();
    assert.equal(events.at(-1)!.generationProgress.status, 'CANCELED');
    const again = await api.gql(`mutation($id: ID!) { cancelGeneration(id: $id) { id } }`, { id: running.id });
    assert.equal(again.errors?.[0].extensions?.code, 'CONFLICT');
    const { generation } = await api.data<{ generation: Generation }>(GENERATION, { id: running.id });
    assert.equal(generation.images.length, 0);
  });
});

describe('the queue', () => {
  test('ten requests from three clients run by priority, then in order; each subscriber sees only its own', async () => {
    const busy = await generate(BLOCKER);
    await waitFor(busy.id, ['RUNNING']);
    const clients = [api.wsClient(), api.wsClient(), api.wsClient()];
    const priorities = [0, 5, 0, -3, 5, 1, 0, 1, -3, 5];
    const submitted: { id: string; priority: number; client: number }[] = [];
    const streams: Promise<{ id: string; events: any[] }>[] = [];
    for (const [i, priority] of priorities.entries()) {
      const g = await generate({ modelId: 'demo', prompt: `job ${i}`, steps: 2, seed: i, priority });
      submitted.push({ id: g.id, priority, client: i % 3 });
      const stream = collectWs<{ generationProgress: any }>(clients[i % 3], PROGRESS, { id: g.id });
      await stream.next(`job ${i}'s state when subscribing`);
      streams.push(stream.done().then((events) => ({ id: g.id, events })));
    }
    const { queue } = await api.data<{ queue: { queued: { id: string; queuePosition: number }[] } }>(`{ queue { queued { id queuePosition } } }`);
    const expected = submitted
      .map((s, order) => ({ ...s, order }))
      .sort((a, b) => b.priority - a.priority || a.order - b.order)
      .map((s) => s.id);
    assert.deepEqual(queue.queued.map((g) => g.id), expected);
    assert.deepEqual(queue.queued.map((g) => g.queuePosition), expected.map((_, i) => i + 1));
    await api.data(`mutation($id: ID!) { cancelGeneration(id: $id) { id } }`, { id: busy.id });
    for (const { id, events } of await Promise.all(streams)) {
      assert.ok(events.every((e) => e.generationProgress.generationId === id), 'a subscriber saw another generation');
      assert.equal(events.at(-1).generationProgress.status, 'SUCCEEDED');
    }
    const started = await Promise.all(expected.map(async (id) => (await waitFor(id, ['SUCCEEDED'])).startedAt!));
    assert.deepEqual([...started].sort(), started, 'generations started out of priority order');
  });
});

describe('history', () => {
  test('filters by text, model, status and date; pages newest first; deletes remove the files', async () => {
    const a = await generate({ modelId: 'demo', prompt: 'a red FOX in snow', steps: 1 });
    const b = await generate({ modelId: 'demo', prompt: 'a blue bird', negativePrompt: 'fox', steps: 1 });
    await waitFor(a.id, ['SUCCEEDED']);
    await waitFor(b.id, ['SUCCEEDED']);
    const search = await api.data<any>(`{ generations(first: 10, filter: { text: "fox", status: [SUCCEEDED] }) { edges { node { id } } } }`);
    assert.deepEqual(search.generations.edges.map((e: any) => e.node.id), [b.id, a.id]);
    const none = await api.data<any>(`{ generations(first: 10, filter: { text: "fox", createdBefore: "2000-01-01T00:00:00Z" }) { edges { node { id } } } }`);
    assert.equal(none.generations.edges.length, 0);
    const page1 = await api.data<any>(`{ generations(first: 1) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }`);
    const page2 = await api.data<any>(`query($after: String) { generations(first: 1, after: $after) { edges { node { id } } } }`, { after: page1.generations.pageInfo.endCursor });
    assert.equal(page1.generations.edges[0].node.id, b.id);
    assert.equal(page2.generations.edges[0].node.id, a.id);

    const { generation } = await api.data<{ generation: Generation }>(GENERATION, { id: a.id });
    const pngs = () => readdirSync(join(api.config.dataDir, 'images'), { recursive: true }).filter((f) => String(f).endsWith('.png')).length;
    const before = pngs();
    await api.data(`mutation($id: ID!) { deleteImage(id: $id) }`, { id: generation.images[0].id });
    assert.equal((await fetch(generation.images[0].url)).status, 404);
    await api.data(`mutation($id: ID!) { deleteGeneration(id: $id) }`, { id: b.id });
    assert.equal(pngs(), before - 2);
    const gone = await api.gql(GENERATION, { id: b.id });
    assert.equal(gone.errors?.[0].extensions?.code, 'NOT_FOUND');
  });
});
