// Schedule types, DPM++ 2M SDE and clip skip through the API, and progress that agrees with the
// generation: every event's step and totalSteps are the generation's own, from the first RUNNING
// event to the final one, whatever the end.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { countUnetCalls } from '../../src/diffusion/pipeline.ts';
import { inspectModelFolder } from '../../src/diffusion/model-folder.ts';
import { resolveRequest } from '../../src/diffusion/request.ts';
import { initImagePng } from '../engine/helpers.ts';
import { BLOCKER, collectWs, startTestServer, waitForStatus, type TestServer } from '../helpers/api.ts';

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id scheduler scheduleType clipSkip } }`;
const PROGRESS = `subscription($id: ID!) { generationProgress(id: $id) { status step totalSteps error } }`;
const GENERATION = `query($id: ID!) { generation(id: $id) { status error step totalSteps steps scheduler scheduleType clipSkip images { id url infotext } } }`;
const PNG_INFO = `query($id: ID!) { pngInfo(image: { imageId: $id }) { sampler scheduleType scheduler schedule clipSkip request requestJson } }`;
const COUNT = `query($filter: GenerationFilter) { generations(first: 1, filter: $filter) { totalCount edges { node { id } } } }`;

let api: TestServer;

before(async () => {
  api = await startTestServer({ models: { demo: {} } });
});
after(() => api.close());

async function generate(input: Record<string, unknown>): Promise<{ id: string; [k: string]: unknown }> {
  return (await api.data<{ generate: { id: string } }>(GENERATE, { input })).generate;
}

/** Every progress event of a generation, followed from before it starts (it waits behind a blocker), with the generation as it ended. */
async function follow(input: Record<string, unknown>) {
  const busy = await generate(BLOCKER);
  const { id } = await generate(input);
  const stream = collectWs<{ generationProgress: any }>(api.wsClient(), PROGRESS, { id });
  await stream.next('the state when subscribing');
  await api.data(`mutation($id: ID!) { cancelGeneration(id: $id) { id } }`, { id: busy.id });
  const events = (await stream.done()).map((e) => e.generationProgress);
  const { generation } = await api.data<any>(GENERATION, { id });
  return { id, events, generation };
}

/** The UNet calls the engine plans for a request on the demo model. */
async function plannedCalls(params: Parameters<typeof resolveRequest>[1]): Promise<number> {
  const model = await inspectModelFolder(join(api.config.modelsDir, 'demo'));
  return countUnetCalls(model, await resolveRequest(model, params));
}

describe('progress agrees with the generation', () => {
  test("Karras with 60 steps runs fewer UNet calls (repeated timesteps run once): totalSteps says so from the RUNNING step 0 event to the last", async () => {
    const input = { modelId: 'demo', prompt: 'karras', steps: 60, scheduler: 'DPMPP_2M', scheduleType: 'KARRAS', seed: 1, previewEvery: 0 };
    const total = await plannedCalls(input);
    assert.ok(total < 60, `${total} UNet calls for 60 steps`);
    const { events, generation } = await follow(input);
    assert.deepEqual(events[0], { status: 'QUEUED', step: 0, totalSteps: total, error: null }, 'the state when subscribing');
    const running = events.filter((e) => e.status === 'RUNNING');
    assert.deepEqual(running[0], { status: 'RUNNING', step: 0, totalSteps: total, error: null }, 'the first RUNNING event');
    assert.deepEqual(running.slice(1).map((e) => e.step), Array.from({ length: total }, (_, i) => i + 1));
    assert.ok(running.every((e) => e.totalSteps === total));
    assert.deepEqual(events.at(-1), { status: 'SUCCEEDED', step: total, totalSteps: total, error: null });
    assert.deepEqual([generation.status, generation.step, generation.totalSteps, generation.steps], ['SUCCEEDED', total, total, 60]);
  });

  test("img2img runs strength × steps of them", async () => {
    const png = await initImagePng(64, 64);
    const { events, generation } = await follow({ modelId: 'demo', prompt: 'img2img', steps: 10, strength: 0.5, scheduler: 'EULER', initImage: { dataUrl: `data:image/png;base64,${png.toString('base64')}` }, previewEvery: 0 });
    assert.equal(events.find((e) => e.status === 'RUNNING').totalSteps, 5);
    assert.deepEqual([generation.status, generation.step, generation.totalSteps], ['SUCCEEDED', 5, 5]);
  });

  test('the CANCELED event of a running generation carries the step it reached and its totalSteps, as the generation does', async () => {
    const { id } = await generate(BLOCKER);
    const stream = collectWs<{ generationProgress: any }>(api.wsClient(), PROGRESS, { id });
    await stream.next('a step done', (e) => e.generationProgress.status === 'RUNNING' && e.generationProgress.step > 0);
    await api.data(`mutation($id: ID!) { cancelGeneration(id: $id) { id } }`, { id });
    const events = (await stream.done()).map((e) => e.generationProgress);
    const { generation } = await api.data<any>(GENERATION, { id });
    const last = events.at(-1);
    assert.equal(last.status, 'CANCELED');
    assert.ok(last.step > 0 && last.totalSteps > 0, JSON.stringify(last));
    assert.deepEqual([generation.status, generation.step, generation.totalSteps], ['CANCELED', last.step, last.totalSteps]);
    assert.equal(last.step, Math.max(...events.map((e) => e.step)), 'the final event is behind a step event');
    // A late subscriber sees the same.
    const late = (await collectWs<{ generationProgress: any }>(api.wsClient(), PROGRESS, { id }).done()).map((e) => e.generationProgress);
    assert.deepEqual(late, [last]);
  });

  test('a generation that fails says so with its step and totalSteps, known from the RUNNING step 0 event even for a row stored without them', async () => {
    // A row as an older sdql stored it (no totalSteps), asking for more clip skip than the demo's 2 layers allow:
    // nothing refused it at submission, so it fails when it runs.
    const { prisma } = api.server.app.db;
    const row = await prisma.generation.create({
      data: { modelId: 'demo', prompt: 'x', scheduler: 'EULER', width: 64, height: 64, steps: 3, guidanceScale: 7.5, seed: 1n, request: { modelId: 'demo', prompt: 'x', clipSkip: 5 } },
    });
    const stream = collectWs<{ generationProgress: any }>(api.wsClient(), PROGRESS, { id: row.id });
    await stream.next('the state when subscribing');
    api.server.app.jobs.queue.announce(row.id, 'QUEUED');
    const events = (await stream.done()).map((e) => e.generationProgress);
    assert.deepEqual(events[0], { status: 'QUEUED', step: 0, totalSteps: null, error: null });
    assert.deepEqual(events.find((e) => e.status === 'RUNNING'), { status: 'RUNNING', step: 0, totalSteps: 3, error: null });
    const last = events.at(-1);
    assert.equal(last.status, 'FAILED');
    assert.match(last.error, /clipSkip 5 is more than model demo's text encoder allows: it has 2 layers, so at most 3/);
    const ended = await prisma.generation.findUniqueOrThrow({ where: { id: row.id } });
    assert.deepEqual([last.step, last.totalSteps], [ended.step, ended.totalSteps]);
    assert.deepEqual([ended.step, ended.totalSteps], [0, 3]);
  });
});

describe('schedule types, DPM++ 2M SDE and clip skip', () => {
  test('are recorded, written in the infotext as AUTOMATIC1111 names them, and read back by pngInfo', async () => {
    const { events, generation } = await follow({ modelId: 'demo', prompt: 'a fox', steps: 4, seed: 9, scheduler: 'DPMPP_2M_SDE', scheduleType: 'EXPONENTIAL', clipSkip: 2 });
    assert.equal(generation.status, 'SUCCEEDED', generation.error);
    assert.deepEqual([generation.scheduler, generation.scheduleType, generation.clipSkip], ['DPMPP_2M_SDE', 'EXPONENTIAL', 2]);
    assert.equal(events.at(-1).totalSteps, generation.totalSteps);
    const [image] = generation.images;
    assert.match(image.infotext, /Steps: 4, Sampler: DPM\+\+ 2M SDE, Schedule type: Exponential, .*, Clip skip: 2$/);
    const { pngInfo } = await api.data<any>(PNG_INFO, { id: image.id });
    assert.deepEqual(
      [pngInfo.sampler, pngInfo.scheduleType, pngInfo.scheduler, pngInfo.schedule, pngInfo.clipSkip],
      ['DPM++ 2M SDE', 'Exponential', 'DPMPP_2M_SDE', 'EXPONENTIAL', 2],
    );
    // The request as a JSON value, and as the deprecated string.
    assert.equal(typeof pngInfo.requestJson, 'object');
    assert.deepEqual(pngInfo.requestJson, JSON.parse(pngInfo.request));
    assert.equal(pngInfo.requestJson.scheduleType, 'EXPONENTIAL');
    assert.equal(pngInfo.requestJson.clipSkip, 2);
  });

  test('clip skip changes the image; clip skip 1 and the default are the same; DPMPP_2M_KARRAS is DPMPP_2M with KARRAS', async () => {
    const image = async (input: Record<string, unknown>) => {
      const { generation } = await follow({ modelId: 'demo', prompt: 'a lighthouse', steps: 3, seed: 4, previewEvery: 0, ...input });
      assert.equal(generation.status, 'SUCCEEDED', generation.error);
      return generation.images[0] as { infotext: string; url: string };
    };
    const plain = await image({ scheduler: 'DDIM' });
    const one = await image({ scheduler: 'DDIM', clipSkip: 1 });
    const two = await image({ scheduler: 'DDIM', clipSkip: 2 });
    const raw = async (url: string) => sharp(Buffer.from(await (await fetch(url)).arrayBuffer())).raw().toBuffer();
    assert.ok((await raw(plain.url)).equals(await raw(one.url)));
    assert.ok(!(await raw(plain.url)).equals(await raw(two.url)));
    assert.doesNotMatch(one.infotext, /Clip skip/);
    const alias = await image({ scheduler: 'DPMPP_2M_KARRAS' });
    const explicit = await image({ scheduler: 'DPMPP_2M', scheduleType: 'KARRAS' });
    assert.ok((await raw(alias.url)).equals(await raw(explicit.url)));
    assert.match(explicit.infotext, /Sampler: DPM\+\+ 2M, Schedule type: Karras,/);
  });

  test('a schedule type the scheduler does not take, and clip skip out of range, are BAD_USER_INPUT naming the field; nothing is stored', async () => {
    const before = (await api.data<any>(COUNT)).generations.totalCount;
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ scheduler: 'EULER_A', scheduleType: 'KARRAS' }, /scheduleType KARRAS does not apply to scheduler EULER_A/],
      [{ scheduler: 'DDIM', scheduleType: 'EXPONENTIAL' }, /scheduleType EXPONENTIAL does not apply to scheduler DDIM/],
      [{ scheduler: 'DPMPP_2M_KARRAS', scheduleType: 'EXPONENTIAL' }, /scheduleType EXPONENTIAL does not apply to scheduler DPMPP_2M_KARRAS/],
      [{ clipSkip: 0 }, /clipSkip must be an integer from 1 to 12/],
      [{ clipSkip: 13 }, /clipSkip must be an integer from 1 to 12/],
      // The demo model's text encoder has 2 layers: hidden_states[0], its embeddings, is as far as clip skip 3 goes.
      [{ clipSkip: 4 }, /clipSkip 4 is more than model demo's text encoder allows: it has 2 layers, so at most 3/],
    ];
    for (const [input, message] of cases) {
      const result = await api.gql(GENERATE, { input: { modelId: 'demo', prompt: 'x', steps: 2, ...input } });
      assert.equal(result.errors?.[0].extensions?.code, 'BAD_USER_INPUT', JSON.stringify(input));
      assert.match(result.errors![0].message, message);
    }
    assert.equal((await api.data<any>(COUNT)).generations.totalCount, before);
    const ok = await generate({ modelId: 'demo', prompt: 'x', steps: 1, clipSkip: 3, scheduler: 'EULER', scheduleType: 'KARRAS' });
    await waitForStatus(api.server.url, ok.id, ['SUCCEEDED']);
  });
});

test('generations counts what its filter matches, on every page', async () => {
  const marker = `count-${Date.now()}`;
  for (let i = 0; i < 3; i++) await waitForStatus(api.server.url, (await generate({ modelId: 'demo', prompt: `${marker} ${i}`, steps: 1 })).id, ['SUCCEEDED']);
  const { generations } = await api.data<any>(COUNT, { filter: { text: marker } });
  assert.equal(generations.totalCount, 3);
  assert.equal(generations.edges.length, 1);
  const none = await api.data<any>(COUNT, { filter: { text: marker, status: ['FAILED'] } });
  assert.equal(none.generations.totalCount, 0);
});
