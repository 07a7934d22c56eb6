// Global object identification through the public API on a listening server: every Node type is
// refetched by `node(id:)` and `nodes(ids:)`, ids say their type, the queries that take one type's
// id take its global id or its plain id, and a wrong or unknown id gets a clear error code.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { TorchGenerator } from '../../src/diffusion/random.ts';
import { collectWs, startTestServer, type TestServer } from '../helpers/api.ts';
import { writeSafetensors } from '../lora/helpers.ts';

let api: TestServer;
let dirs: string;
/** One object of each Node type: its global id and what identifies it otherwise. */
let objects: { typename: string; id: string; local: string }[];

const decode = (id: string) => Buffer.from(id, 'base64').toString('utf8');
const encode = (typename: string, local: string) => Buffer.from(`${typename}:${local}`).toString('base64');

before(async () => {
  dirs = mkdtempSync(join(tmpdir(), 'sdql-node-'));
  const lorasDir = join(dirs, 'loras');
  const embeddingsDir = join(dirs, 'embeddings');
  mkdirSync(lorasDir);
  mkdirSync(embeddingsDir);
  // An embedding as wide as the fixture text encoder (32); a LoRA of one made-up tensor, which changes no layer.
  await writeSafetensors(join(embeddingsDir, 'sdqlstyle.safetensors'), { emb_params: { shape: [1, 32], data: new TorchGenerator(1).randn(32) } });
  await writeSafetensors(join(lorasDir, 'style.safetensors'), { lora_unet_x_lora_down_weight: { shape: [1, 4], data: new TorchGenerator(2).randn(4) } }, { ss_output_name: 'Style v1' });
  api = await startTestServer({ models: { demo: {} }, env: { SDQL_LORAS_DIR: lorasDir, SDQL_EMBEDDINGS_DIR: embeddingsDir } });

  const { generate } = await api.data(`mutation { generate(input: { modelId: "demo", prompt: "a fox", steps: 1 }) { id } }`);
  const events = await collectWs<{ generationProgress: { generationId: string; status: string } }>(
    api.wsClient(),
    `subscription($id: ID!) { generationProgress(id: $id) { generationId status } }`,
    { id: generate.id },
  ).done();
  assert.equal(events.at(-1)!.generationProgress.status, 'SUCCEEDED');
  assert.ok(events.every((e) => e.generationProgress.generationId === generate.id), 'generationId is the global id');

  const data = await api.data(`query($id: ID!) {
    generation(id: $id) { id modelId model { id name } images { id } }
    loras { id tagName name }
    embeddings { id name }
  }`, { id: generate.id });
  const { generation } = data;
  assert.equal(generation.modelId, generation.model.id);
  objects = [
    { typename: 'Generation', id: generation.id, local: decode(generation.id).slice('Generation:'.length) },
    { typename: 'Image', id: generation.images[0].id, local: decode(generation.images[0].id).slice('Image:'.length) },
    { typename: 'Model', id: generation.model.id, local: generation.model.name },
    { typename: 'Lora', id: data.loras[0].id, local: data.loras[0].tagName },
    { typename: 'Embedding', id: data.embeddings[0].id, local: data.embeddings[0].name },
  ];
  assert.deepEqual([data.loras[0].tagName, data.loras[0].name], ['style', 'Style v1']);
});

after(async () => {
  await api?.close();
  rmSync(dirs, { recursive: true, force: true });
});

test('every id is a global id that says its type: base64 of Typename:localId', () => {
  for (const { typename, id, local } of objects) {
    assert.equal(decode(id), `${typename}:${local}`);
    assert.equal(id, encode(typename, local));
  }
  assert.deepEqual(objects.slice(2).map((o) => o.local), ['demo', 'style', 'sdqlstyle']);
  assert.match(objects[0].local, /^[0-9a-f-]{36}$/);
});

const NODE_FIELDS = `__typename id
  ... on Generation { prompt }
  ... on Image { index }
  ... on Model { name }
  ... on Lora { tagName }
  ... on Embedding { name }`;

test('node(id:) refetches an object of each Node type', async () => {
  const expected: Record<string, Record<string, unknown>> = {
    Generation: { prompt: 'a fox' },
    Image: { index: 0 },
    Model: { name: 'demo' },
    Lora: { tagName: 'style' },
    Embedding: { name: 'sdqlstyle' },
  };
  for (const { typename, id } of objects) {
    const { node } = await api.data(`query($id: ID!) { node(id: $id) { ${NODE_FIELDS} } }`, { id });
    assert.deepEqual(node, { __typename: typename, id, ...expected[typename] });
  }
});

test('nodes(ids:) refetches them in order, with null and NOT_FOUND at the index of an id that names nothing', async () => {
  const missing = encode('Generation', '00000000-0000-7000-8000-000000000000');
  const ids = [...objects.map((o) => o.id).reverse(), missing];
  const { data, errors } = await api.gql<{ nodes: ({ id: string; __typename: string } | null)[] }>(`query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }`, { ids });
  assert.deepEqual(data!.nodes, [...objects.map((o) => ({ __typename: o.typename, id: o.id })).reverse(), null]);
  assert.equal(errors?.length, 1);
  assert.equal(errors![0].extensions?.code, 'NOT_FOUND');
  assert.deepEqual((errors![0] as { path?: unknown[] }).path, ['nodes', ids.length - 1]);
});

test('node(id:) errors: not a global id or no Node type is BAD_USER_INPUT; nothing with that id is NOT_FOUND', async () => {
  const cases: [string, string, RegExp][] = [
    ['demo', 'BAD_USER_INPUT', /"demo" is not a global id/],
    [encode('Query', 'x'), 'BAD_USER_INPUT', /Query is not a type of Node/],
    [encode('Nope', 'x'), 'BAD_USER_INPUT', /Nope is not a type of Node/],
    [encode('Model', 'gone'), 'NOT_FOUND', new RegExp(`no Model has the id "${encode('Model', 'gone')}"`)],
    [encode('Embedding', 'gone'), 'NOT_FOUND', /no Embedding has the id/],
  ];
  for (const [id, code, message] of cases) {
    const { data, errors } = await api.gql(`query($id: ID!) { node(id: $id) { id } }`, { id });
    assert.equal(data?.node, null, id);
    assert.equal(errors?.[0].extensions?.code, code, id);
    assert.match(errors![0].message, message);
  }
});

test('the queries that take one type accept its global id and its plain id alike', async () => {
  const [generation, image, model, lora] = objects;
  for (const id of [model.id, model.local]) assert.equal((await api.data(`query($id: ID!) { model(id: $id) { id } }`, { id })).model.id, model.id);
  for (const id of [lora.id, lora.local]) assert.equal((await api.data(`query($id: ID!) { lora(id: $id) { id } }`, { id })).lora.id, lora.id);
  for (const id of [generation.id, generation.local]) {
    assert.equal((await api.data(`query($id: ID!) { generation(id: $id) { id } }`, { id })).generation.id, generation.id);
  }
  for (const modelId of [model.id, model.local]) {
    const { generations } = await api.data(`query($m: ID!) { generations(filter: { modelId: $m }) { edges { node { id } } } }`, { m: modelId });
    assert.deepEqual(generations.edges.map((e: { node: { id: string } }) => e.node.id), [generation.id]);
    assert.equal((await api.data(`query($m: ID!) { tokenize(modelId: $m, text: "a") }`, { m: modelId })).tokenize.length, 3);
  }

  // A generation named by global ids throughout: its model, a LoRA, an init image; then deleted by id.
  const input = { modelId: model.id, prompt: 'again', steps: 1, strength: 1, loras: [{ id: lora.id, weight: 0 }], initImage: { imageId: image.id } };
  const { generate } = await api.data(`mutation($input: GenerateInput!) { generate(input: $input) { id modelId loras { name } } }`, { input });
  assert.deepEqual([generate.modelId, generate.loras], [model.id, [{ name: 'style' }]]);
  const done = await collectWs<{ generationProgress: { status: string } }>(api.wsClient(), `subscription($id: ID!) { generationProgress(id: $id) { status } }`, { id: generate.id }).done();
  assert.equal(done.at(-1)!.generationProgress.status, 'SUCCEEDED');
  const { generation: again } = await api.data(`query($id: ID!) { generation(id: $id) { images { id } } }`, { id: generate.id });
  const plainImage = decode(again.images[0].id).slice('Image:'.length);
  assert.equal((await api.data(`mutation($id: ID!) { deleteImage(id: $id) }`, { id: plainImage })).deleteImage, again.images[0].id);
  assert.equal((await api.data(`mutation($id: ID!) { deleteGeneration(id: $id) }`, { id: generate.id })).deleteGeneration, generate.id);
});

test('an id of another type is BAD_USER_INPUT, saying whose it is; an unknown plain id is NOT_FOUND', async () => {
  const [generation, image, model] = objects;
  const cases: [string, Record<string, unknown>, string, RegExp][] = [
    [`query($id: ID!) { model(id: $id) { id } }`, { id: image.id }, 'BAD_USER_INPUT', /is a global id of type Image, not Model/],
    [`query($id: ID!) { generation(id: $id) { id } }`, { id: model.id }, 'BAD_USER_INPUT', /is a global id of type Model, not Generation/],
    [`mutation($id: ID!) { deleteImage(id: $id) }`, { id: generation.id }, 'BAD_USER_INPUT', /is a global id of type Generation, not Image/],
    [`mutation($input: GenerateInput!) { generate(input: $input) { id } }`, { input: { modelId: generation.id, prompt: 'x' } }, 'BAD_USER_INPUT', /of type Generation, not Model/],
    [`mutation($input: GenerateInput!) { generate(input: $input) { id } }`, { input: { modelId: 'demo', prompt: 'x', initImage: { imageId: model.id } } }, 'BAD_USER_INPUT', /of type Model, not Image/],
    [`query($id: ID!) { model(id: $id) { id } }`, { id: 'nope' }, 'NOT_FOUND', /no model has the id "nope"/],
    [`mutation($id: ID!) { cancelGeneration(id: $id) { id } }`, { id: encode('Generation', 'nope') }, 'NOT_FOUND', /no generation has the id/],
  ];
  for (const [query, variables, code, message] of cases) {
    const { errors } = await api.gql(query, variables);
    assert.equal(errors?.[0].extensions?.code, code, `${query} ${JSON.stringify(variables)}`);
    assert.match(errors![0].message, message);
  }
});
