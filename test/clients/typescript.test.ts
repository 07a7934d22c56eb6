// The TypeScript client (clients/typescript) against a listening server with the fixture model: its
// documents fit the schema, it follows a generation step by step, surfaces error codes, cancels,
// uploads init images, and its generate.ts example writes PNGs.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { buildSchema, Kind, parse, print, validate, type FieldNode, type FragmentDefinitionNode, type GraphQLObjectType, type SelectionNode } from 'graphql';
import sharp from 'sharp';
import {
  createSdqlClient,
  operations,
  SdqlError,
  type Generation,
  type GenerationProgress,
  type SdqlClient,
} from '../../clients/typescript/sdql-client.ts';
import { CLIENT_TYPES_FILE, generateClientTypes } from '../../scripts/codegen.ts';
import { BLOCKER, startTestServer, waitForStatus, type TestServer } from '../helpers/api.ts';
import { EventLog, withDeadline } from '../helpers/wait.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

let api: TestServer;
let client: SdqlClient;

before(async () => {
  api = await startTestServer();
  client = createSdqlClient({ url: api.server.url });
});
after(async () => {
  await client.close();
  await api.close();
});

/** Follows a generation; `first()` settles at its first event (its state when subscribing). */
function follow(id: string) {
  const log = new EventLog<GenerationProgress>();
  const final = client.progress(id, (event) => log.push(event));
  return { events: log.events, first: () => log.next(`the first event of generation ${id}`), final: () => withDeadline(final, `the final status of generation ${id}`) };
}

async function cancelBlocker(id: string) {
  const blocked = follow(id);
  await client.cancel(id);
  assert.equal((await blocked.final()).status, 'CANCELED');
}

test('the documents are valid against schema/schema.graphql and select every field of their types but the back-links', () => {
  const schema = buildSchema(readFileSync(join(root, 'schema/schema.graphql'), 'utf8'));
  for (const [name, document] of Object.entries(operations)) assert.deepEqual(validate(schema, parse(String(document))), [], name);
  const fieldsOf = (type: string, except?: string) => Object.keys((schema.getType(type) as GraphQLObjectType).getFields()).filter((f) => f !== except).sort();
  const generation = fragmentSelection(operations.generation, 'GenerationFields');
  assert.deepEqual(names(generation), fieldsOf('Generation', 'model'));
  assert.deepEqual(names(fragmentSelection(operations.generation, 'ImageFields')), fieldsOf('Image', 'generation'));
  assert.deepEqual(subSelection(generation, 'images').map((s) => print(s)), ['...ImageFields']);
  assert.deepEqual(names(subSelection(generation, 'loras') as FieldNode[]), fieldsOf('AppliedLora'));
  for (const document of [operations.generate, operations.generation, operations.cancel]) assert.deepEqual(rootSelection(document).map((s) => print(s)), ['...GenerationFields']);
  const progress = rootSelection(operations.progress) as FieldNode[];
  assert.deepEqual(names(progress), fieldsOf('GenerationProgress'));
  assert.deepEqual(names(subSelection(progress, 'preview') as FieldNode[]), fieldsOf('Preview'));
  const upscale = fragmentSelection(operations.upscale, 'UpscaleFields');
  assert.deepEqual(names(upscale), fieldsOf('Upscale'));
  assert.deepEqual(names(subSelection(upscale, 'image') as FieldNode[]), fieldsOf('UpscaleImage', 'upscale'));
  for (const document of [operations.upscale, operations.getUpscale, operations.cancelUpscale]) assert.deepEqual(rootSelection(document).map((s) => print(s)), ['...UpscaleFields']);
  assert.deepEqual(names(rootSelection(operations.upscaleProgress) as FieldNode[]), fieldsOf('UpscaleProgress'));
});

test('clients/typescript/generated/graphql.ts is what `npm run codegen` writes from the schema and the operations', async () => {
  assert.ok(readFileSync(CLIENT_TYPES_FILE, 'utf8') === (await generateClientTypes()), 'clients/typescript/generated/graphql.ts is stale: run `npm run codegen`');
});

/** The selections of the operation's one root field. */
function rootSelection(document: object): readonly SelectionNode[] {
  const operation = parse(String(document), { noLocation: true }).definitions.find((d) => d.kind === Kind.OPERATION_DEFINITION)!;
  const [root] = operation.selectionSet.selections as FieldNode[];
  return root.selectionSet!.selections;
}

/** The fields a fragment of the document selects. */
function fragmentSelection(document: object, name: string): readonly FieldNode[] {
  const fragment = parse(String(document), { noLocation: true }).definitions.find((d) => d.kind === Kind.FRAGMENT_DEFINITION && d.name.value === name) as FragmentDefinitionNode;
  return fragment.selectionSet.selections as FieldNode[];
}

function subSelection(fields: readonly FieldNode[], name: string): readonly SelectionNode[] {
  return fields.find((f) => f.name.value === name)!.selectionSet!.selections;
}

/** The type a global id names (it is base64 of Typename:localId). */
const typeOfId = (id: string) => Buffer.from(id, 'base64').toString('utf8').split(':')[0];

const names = (fields: readonly FieldNode[]) => fields.map((f) => f.name.value).sort();

test('generate → an event for every step → SUCCEEDED → a PNG that decodes', async () => {
  const busy = await client.generate(BLOCKER);
  const queued = await client.generate({ modelId: 'demo', prompt: 'a lighthouse', steps: 3, seed: 1, scheduler: 'EULER' });
  assert.equal(queued.status, 'QUEUED');
  assert.deepEqual([queued.seed, queued.steps, queued.scheduler, queued.images], [1, 3, 'EULER', []]);
  const followed = follow(queued.id);
  await followed.first();
  await cancelBlocker(busy.id);
  const final = await followed.final();

  assert.equal(followed.events[0].status, 'QUEUED');
  const steps = followed.events.filter((e) => e.status === 'RUNNING' && e.step > 0);
  assert.deepEqual(steps.map((e) => [e.step, e.totalSteps]), [[1, 3], [2, 3], [3, 3]]);
  assert.ok(steps.every((e) => e.generationId === queued.id && e.preview?.dataUrl.startsWith('data:image/jpeg;base64,')));
  assert.equal(final, followed.events.at(-1));
  assert.equal(final.status, 'SUCCEEDED');

  // Ids are global ids, and the client passes them back as they came.
  assert.equal(typeOfId(queued.id), 'Generation');
  assert.equal(final.generationId, queued.id);
  const done: Generation = await client.generation(queued.id);
  assert.deepEqual([typeOfId(done.modelId), typeOfId(done.images[0].id)], ['Model', 'Image']);
  assert.equal(done.status, 'SUCCEEDED');
  assert.equal(done.images.length, 1);
  const png = await client.download(done.images[0]);
  assert.equal(png.byteLength, done.images[0].bytes);
  const decoded = await sharp(png).metadata();
  assert.deepEqual([decoded.format, decoded.width, decoded.height], ['png', done.width, done.height]);
});

test('upscale an image of the history → an event per tile → SUCCEEDED → a PNG twice the size', async () => {
  const generated = await client.generate({ modelId: 'demo', prompt: 'a lighthouse', steps: 1, seed: 2 });
  await withDeadline(client.progress(generated.id), 'the generation');
  const [image] = (await client.generation(generated.id)).images;
  const queued = await client.upscale({ image: { imageId: image.id }, upscaler: 'lanczos' });
  assert.deepEqual([typeOfId(queued.id), queued.status, queued.scale, queued.width, queued.totalSteps, queued.image], ['Upscale', 'QUEUED', 2, image.width * 2, 1, null]);
  const events: string[] = [];
  const final = await withDeadline(client.upscaleProgress(queued.id, (e) => events.push(`${e.status} ${e.step}/${e.totalSteps}`)), 'the upscale');
  assert.deepEqual([final.upscaleId, final.status, events.at(-1)], [queued.id, 'SUCCEEDED', 'SUCCEEDED 1/1']);
  const done = await client.getUpscale(queued.id);
  assert.equal(done.source.image?.id, image.id);
  const decoded = await sharp(await client.download(done.image!)).metadata();
  assert.deepEqual([decoded.width, decoded.height, done.image!.postprocessing], [image.width * 2, image.height * 2, 'Postprocess upscale by: 2, Postprocess upscaler: Lanczos']);
  await assert.rejects(client.cancelUpscale(queued.id), { name: 'SdqlError', code: 'CONFLICT' });
  await assert.rejects(client.getUpscale(generated.id), { name: 'SdqlError', code: 'BAD_USER_INPUT' });
});

test('GraphQL errors become SdqlErrors with their code', async () => {
  await assert.rejects(client.generate({ modelId: 'demo', prompt: 'x', steps: 0 }), (error) => {
    assert.ok(error instanceof SdqlError);
    assert.equal(error.code, 'BAD_USER_INPUT');
    assert.match(error.message, /steps/);
    return true;
  });
  await assert.rejects(client.generation('missing'), { name: 'SdqlError', code: 'NOT_FOUND' });
  await assert.rejects(client.progress('missing'), { name: 'SdqlError', code: 'NOT_FOUND' });
});

test('cancel: a queued generation at once, a running one at its next step; CONFLICT once ended', async () => {
  const running = await client.generate(BLOCKER);
  const queued = await client.generate({ modelId: 'demo', prompt: 'never runs', steps: 2 });
  assert.equal((await client.cancel(queued.id)).status, 'CANCELED');
  const late = follow(queued.id);
  assert.equal((await late.final()).status, 'CANCELED');
  assert.deepEqual(late.events.map((e) => e.status), ['CANCELED']);
  await assert.rejects(client.cancel(queued.id), { name: 'SdqlError', code: 'CONFLICT' });

  const followed = follow(running.id);
  await waitForStatus(api.server.url, running.id, ['RUNNING']);
  assert.equal((await client.cancel(running.id)).status, 'CANCELED');
  assert.equal((await followed.final()).status, 'CANCELED');
  assert.equal((await client.generation(running.id)).images.length, 0);
});

test('an init image given as a Blob goes up as a multipart upload', async () => {
  const init = await sharp({ create: { width: 72, height: 80, channels: 3, background: '#336699' } }).png().toBuffer();
  const queued = await client.generate({ modelId: 'demo', prompt: 'img2img', steps: 2, strength: 1, initImage: { file: new Blob([init], { type: 'image/png' }) } });
  assert.deepEqual([queued.width, queued.height, queued.strength], [72, 80, 1]);
  assert.equal((await client.progress(queued.id)).status, 'SUCCEEDED');
});

test('generate.ts prints a line per step and writes every image', async () => {
  const busy = await client.generate(BLOCKER);
  const out = join(api.tmp, 'fox.png');
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'clients/typescript/generate.ts', '--url', api.server.url, '--model', 'demo', '--prompt', 'a fox', '--seed', '7', '--steps', '2', '-n', '2', '-o', out],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  // The worker stays busy until the child has subscribed, so it sees every step.
  const subscribed = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      if (stdout.includes('queued\n')) resolve();
    });
    child.on('close', () => reject(new Error(`generate.ts exited early: ${stdout}${stderr}`)));
  });
  await withDeadline(subscribed, 'the "queued" line of generate.ts');
  await cancelBlocker(busy.id);
  assert.equal(await withDeadline(exited, 'the exit of generate.ts'), 0, stderr);

  assert.match(stdout, /^generation \S+: seed 7, \d+x\d+, 2 steps, DPMPP_2M_KARRAS\nqueued\nstep 1\/2( {2}ETA \d+\.\ds)?\nstep 2\/2( {2}ETA \d+\.\ds)?\n/);
  for (const [i, file] of ['fox-0.png', 'fox-1.png'].entries()) {
    assert.match(stdout, new RegExp(`wrote ${join(api.tmp, file).replace(/[.\\]/g, '\\$&')} \\(seed ${7 + i}\\)`));
    assert.equal((await sharp(join(api.tmp, file)).metadata()).format, 'png');
  }
});

test('against a server with tokens: the token goes with every request; signed image URLs download without it', async () => {
  const secured = await startTestServer({ env: { SDQL_AUTH: 'tokens' } });
  const anonymous = createSdqlClient({ url: secured.server.url });
  const authorized = createSdqlClient({ url: secured.server.url, token: secured.adminToken });
  try {
    await assert.rejects(anonymous.generate({ modelId: 'demo', prompt: 'x', steps: 1 }), { name: 'SdqlError', code: 'UNAUTHENTICATED' });
    const queued = await authorized.generate({ modelId: 'demo', prompt: 'a token', steps: 1, seed: 3 });
    await assert.rejects(anonymous.progress(queued.id), { name: 'SdqlError', code: 'UNAUTHENTICATED' });
    await assert.rejects(anonymous.generation(queued.id), { name: 'SdqlError', code: 'UNAUTHENTICATED' });
    assert.equal((await authorized.progress(queued.id)).status, 'SUCCEEDED');
    const [image] = (await authorized.generation(queued.id)).images;
    assert.match(image.url, /\?exp=\d+&sig=/);
    const png = await anonymous.download(image);
    assert.equal(png.byteLength, image.bytes);
  } finally {
    await anonymous.close();
    await authorized.close();
    await secured.close();
  }
});
