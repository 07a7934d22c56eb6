// SDQL_AUTH=tokens through real HTTP, server-sent events and WebSocket: no request without a valid
// token, scopes (READ, GENERATE, ADMIN), generations that belong to their token, token management,
// signed image URLs and the queue quota.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createClient } from 'graphql-ws';
import sharp from 'sharp';
import WebSocket from 'ws';
import { imageSignature } from '../../src/auth/index.ts';
import { bearer, BLOCKER, collectSse, collectWs, startTestServer, waitForStatus, type TestServer } from '../helpers/api.ts';
import { withDeadline } from '../helpers/wait.ts';

let api: TestServer;
let admin: string;
const tokens: Record<string, string> = {};

before(async () => {
  api = await startTestServer({ env: { SDQL_AUTH: 'tokens', SDQL_MAX_QUEUED: '3' } });
  assert.ok(api.adminToken, 'the first start with tokens creates an admin token');
  admin = api.adminToken;
});
after(() => api?.close());

const GENERATE = 'mutation($input: GenerateInput!) { generate(input: $input) { id owner status } }';
const CREATE = 'mutation($name: String!, $scopes: [Scope!]!) { createToken(name: $name, scopes: $scopes) { token name scopes createdAt } }';

/** A POST as a client sends it, with the status and headers of the answer. */
async function post(body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${api.server.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: response.status, headers: response.headers, body: JSON.parse(await response.text()) };
}

const code = (result: { errors?: { extensions?: { code?: string } }[] }) => result.errors?.[0]?.extensions?.code;

/** Opens a graphql-ws connection and subscribes; resolves with the close event of a refused connection. */
function refusedWs(connectionParams?: Record<string, unknown>): Promise<{ code: number; reason: string }> {
  const client = createClient({ url: `${api.server.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true, connectionParams });
  const closed = new Promise<{ code: number; reason: string }>((resolve, reject) => {
    client.subscribe(
      { query: 'subscription { queue { queued { id } } }' },
      {
        next: () => reject(new Error('the subscription got an event')),
        error: (error) => resolve(error as { code: number; reason: string }),
        complete: () => reject(new Error('the subscription completed')),
      },
    );
  });
  return withDeadline(closed, 'the refusal of the WebSocket').finally(() => client.dispose());
}

test('without a valid token every transport answers UNAUTHENTICATED; /healthz and the GraphiQL page stay open', async () => {
  const query = { query: '{ system { version } }' };
  const none = await post(query);
  assert.equal(none.status, 401);
  assert.equal(code(none.body), 'UNAUTHENTICATED');
  assert.match(none.body.errors[0].message, /Authorization: Bearer/);
  assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="sdql"');
  assert.equal(none.body.data, undefined, 'nothing ran');

  const unknown = await post(query, bearer('sdql_notatoken'));
  assert.equal(unknown.status, 401);
  assert.match(unknown.body.errors[0].message, /unknown or was revoked/);
  // Introspection too: nothing of the schema answers without a token.
  assert.equal((await post({ query: '{ __schema { queryType { name } } }' })).status, 401);

  const get = await fetch(`${api.server.url}/graphql?query=${encodeURIComponent('{ system { version } }')}`, { headers: { accept: 'application/json', 'graphql-require-preflight': '1' } });
  assert.equal(get.status, 401);

  const sse = await fetch(`${api.server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ query: 'subscription { queue { queued { id } } }' }),
  });
  assert.equal(sse.status, 401);
  assert.match(await sse.text(), /UNAUTHENTICATED/);

  const noParams = await refusedWs();
  assert.equal(noParams.code, 4401);
  assert.match(noParams.reason, /connectionParams\.authorization/);
  assert.equal((await refusedWs({ authorization: 'Bearer sdql_notatoken' })).code, 4401);

  assert.equal((await fetch(`${api.server.url}/healthz`)).status, 200);
  const page = await fetch(`${api.server.url}/graphql`, { headers: { accept: 'text/html' } });
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type') ?? '', /text\/html/);

  // graphql-ws clients that pass their headers as connectionParams are understood too.
  for (const connectionParams of [{ Authorization: `Bearer ${admin}` }, { headers: { Authorization: `Bearer ${admin}` } }]) {
    const client = createClient({ url: `${api.server.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true, connectionParams });
    try {
      assert.ok((await collectWs(client, 'subscription { queue { queued { id } } }').next('the queue')).queue, JSON.stringify(connectionParams));
    } finally {
      await client.dispose();
    }
  }
  assert.equal((await post(query, bearer(admin))).status, 200);
  assert.ok((await api.data('{ system { version } }', {}, admin)).system.version);
});

test('an ADMIN token creates, lists and revokes tokens; other tokens may not', async () => {
  for (const [name, scopes] of [
    ['reader', ['READ']],
    ['alice', ['GENERATE']],
    ['bob', ['GENERATE', 'READ']],
  ] as const) {
    const { createToken } = await api.data(CREATE, { name, scopes }, admin);
    assert.match(createToken.token, /^sdql_[\w-]{43}$/, 'sdql_ and 256 random bits');
    assert.equal(createToken.name, name);
    tokens[name] = createToken.token;
  }
  const { tokens: listed } = await api.data('{ tokens { name scopes createdAt lastUsedAt } }', {}, admin);
  assert.deepEqual(
    listed.map((t: { name: string; scopes: string[] }) => [t.name, t.scopes]),
    [['admin', ['ADMIN']], ['reader', ['READ']], ['alice', ['GENERATE']], ['bob', ['READ', 'GENERATE']]],
  );
  assert.ok(listed[0].lastUsedAt, 'the admin token has been used');
  // Only hashes are stored.
  const stored = JSON.stringify(await api.server.app.db.prisma.token.findMany());
  for (const token of [admin, ...Object.values(tokens)]) assert.ok(!stored.includes(token.slice(5)), 'no token is stored as such');

  assert.equal(code(await api.gql(CREATE, { name: 'alice', scopes: ['READ'] }, admin)), 'CONFLICT');
  const badName = await api.gql(CREATE, { name: 'no spaces', scopes: ['READ'] }, admin);
  assert.equal(code(badName), 'BAD_USER_INPUT');
  assert.match(badName.errors![0].message, /name must be/);
  assert.equal(code(await api.gql(CREATE, { name: 'nothing', scopes: [] }, admin)), 'BAD_USER_INPUT');

  for (const query of ['{ tokens { name } }', 'mutation { rescanModels { scannedAt } }', 'mutation { revokeToken(name: "reader") { name } }']) {
    const refused = await api.gql(query, {}, tokens.alice);
    assert.equal(code(refused), 'FORBIDDEN', query);
    assert.match(refused.errors![0].message, /needs a token with the ADMIN scope \(this is token "alice"\)/);
  }
  assert.equal(code(await api.gql(CREATE, { name: 'mine', scopes: ['ADMIN'] }, tokens.bob)), 'FORBIDDEN');
  assert.ok((await api.data('mutation { rescanModels { scannedAt } }', {}, admin)).rescanModels.scannedAt);
});

test('a READ token reads but cannot generate, and nothing is stored', async () => {
  assert.deepEqual((await api.data('{ models { name } }', {}, tokens.reader)).models, [{ name: 'demo' }]);
  const before = await api.server.app.db.prisma.generation.count();
  const refused = await api.gql(GENERATE, { input: { modelId: 'demo', prompt: 'x', steps: 1 } }, tokens.reader);
  assert.equal(code(refused), 'FORBIDDEN');
  assert.match(refused.errors![0].message, /Mutation\.generate needs a token with the GENERATE scope/);
  assert.equal(await api.server.app.db.prisma.generation.count(), before);
});

let aliceDone: string;

test("a GENERATE token sees and acts on its own generations only; others' queue entries show without prompts; ADMIN sees all", async () => {
  const { generate: done } = await api.data(GENERATE, { input: { modelId: 'demo', prompt: 'alice private', steps: 1, numImages: 2 } }, tokens.alice);
  assert.equal(done.owner, 'alice');
  aliceDone = done.id;
  await waitForStatus(api.server.url, done.id, ['SUCCEEDED'], undefined, tokens.alice);
  const blocker = (await api.data(GENERATE, { input: BLOCKER }, admin)).generate;
  await waitForStatus(api.server.url, blocker.id, ['RUNNING'], undefined, admin);
  const aliceQueued = (await api.data(GENERATE, { input: { modelId: 'demo', prompt: 'alice queued secret', negativePrompt: 'alice negative', steps: 1 } }, tokens.alice)).generate;
  const bobQueued = (await api.data(GENERATE, { input: { modelId: 'demo', prompt: 'bob queued', steps: 1 } }, tokens.bob)).generate;
  const { generation: aliceView } = await api.data(`{ generation(id: "${done.id}") { images { id } } }`, {}, tokens.alice);
  const aliceImage = aliceView.images[0].id;

  for (const [query, what] of [
    [`{ generation(id: "${done.id}") { id } }`, 'generation'],
    [`{ node(id: "${done.id}") { id } }`, 'node'],
    [`{ node(id: "${aliceImage}") { id } }`, 'node of an image'],
    [`mutation { cancelGeneration(id: "${aliceQueued.id}") { id } }`, 'cancelGeneration'],
    [`mutation { deleteGeneration(id: "${done.id}") }`, 'deleteGeneration'],
    [`mutation { deleteImage(id: "${aliceImage}") }`, 'deleteImage'],
    [`{ pngInfo(image: { imageId: "${aliceImage}" }) { prompt } }`, 'pngInfo'],
    [`mutation { generate(input: { modelId: "demo", prompt: "x", initImage: { imageId: "${aliceImage}" } }) { id } }`, 'an init image'],
  ]) {
    assert.equal(code(await api.gql(query, {}, tokens.bob)), 'NOT_FOUND', what);
  }
  const progress = collectWs(api.wsClient(tokens.bob), 'subscription($id: ID!) { generationProgress(id: $id) { status } }', { id: aliceQueued.id });
  await assert.rejects(progress.done(), /NOT_FOUND/);

  const listOf = async (token: string) =>
    (await api.data('{ generations(first: 100) { edges { node { id owner } } } }', {}, token)).generations.edges.map((e: { node: { id: string; owner: string } }) => e.node);
  assert.deepEqual(await listOf(tokens.bob), [{ id: bobQueued.id, owner: 'bob' }]);
  const all = await listOf(admin);
  for (const id of [done.id, aliceQueued.id, bobQueued.id, blocker.id]) assert.ok(all.some((g: { id: string }) => g.id === id), 'ADMIN lists every owner');

  const QUEUE = '{ queue { running { id owner prompt } queued { id owner prompt negativePrompt loras { name } queuePosition } } }';
  const { queue: bobsQueue } = await api.data(QUEUE, {}, tokens.bob);
  assert.deepEqual(bobsQueue.running, [{ id: blocker.id, owner: 'admin', prompt: '' }]);
  assert.deepEqual(bobsQueue.queued, [
    { id: aliceQueued.id, owner: 'alice', prompt: '', negativePrompt: '', loras: [], queuePosition: 1 },
    { id: bobQueued.id, owner: 'bob', prompt: 'bob queued', negativePrompt: '', loras: [], queuePosition: 2 },
  ]);
  const { queue: adminsQueue } = await api.data(QUEUE, {}, admin);
  assert.deepEqual(
    adminsQueue.queued.map((g: { prompt: string; negativePrompt: string }) => [g.prompt, g.negativePrompt]),
    [['alice queued secret', 'alice negative'], ['bob queued', '']],
  );
  assert.equal((await api.data(`{ generation(id: "${aliceQueued.id}") { prompt } }`, {}, admin)).generation.prompt, 'alice queued secret');

  // priority above 0 needs ADMIN.
  const jump = await api.gql(GENERATE, { input: { modelId: 'demo', prompt: 'me first', steps: 1, priority: 5 } }, tokens.bob);
  assert.equal(code(jump), 'FORBIDDEN');
  assert.match(jump.errors![0].message, /ADMIN/);
  assert.equal((await api.data(GENERATE, { input: { modelId: 'demo', prompt: 'urgent', steps: 1, priority: 5 } }, admin)).generate.status, 'QUEUED');

  // The owner follows its own over SSE, and cancels it.
  const sse = collectSse(api.server.url, 'subscription($id: ID!) { generationProgress(id: $id) { status } }', { id: aliceQueued.id }, tokens.alice);
  await sse.next('the first event over SSE');
  assert.equal((await api.data(`mutation { cancelGeneration(id: "${aliceQueued.id}") { status } }`, {}, tokens.alice)).cancelGeneration.status, 'CANCELED');
  assert.deepEqual((await sse.done()).map((e) => e.generationProgress.status), ['QUEUED', 'CANCELED']);
  await api.data(`mutation { cancelGeneration(id: "${blocker.id}") { id } }`, {}, admin);
});

test('image URLs are signed: the URL works without headers for that image only, until it expires', async () => {
  const { generation } = await api.data(`{ generation(id: "${aliceDone}") { images { url } } }`, {}, tokens.alice);
  const [first, second] = generation.images.map((i: { url: string }) => new URL(i.url));
  assert.match(first.search, /^\?exp=\d+&sig=[\w-]{43}$/);
  const image = await fetch(first);
  assert.equal(image.status, 200);
  assert.equal(image.headers.get('content-type'), 'image/png');
  assert.equal((await sharp(Buffer.from(await image.arrayBuffer())).metadata()).format, 'png');

  const status = async (url: string) => (await fetch(url)).status;
  const origin = first.origin;
  assert.equal(await status(`${origin}${first.pathname}`), 403, 'the path alone');
  assert.equal(await status(`${origin}${second.pathname}${first.search}`), 403, "another image's path with this signature");
  const exp = Number(first.searchParams.get('exp'));
  assert.equal(await status(`${origin}${first.pathname}?exp=${exp + 1}&sig=${first.searchParams.get('sig')}`), 403, 'a longer expiry');
  assert.equal(await status(`${origin}${first.pathname}?exp=${exp}&sig=${'A'.repeat(43)}`), 403, 'another signature');

  const { value } = await api.server.app.db.prisma.secret.findUniqueOrThrow({ where: { name: 'image-url-key' } });
  const key = Buffer.from(value, 'base64url');
  const signed = (at: number) => `${origin}${first.pathname}?exp=${at}&sig=${imageSignature(key, first.pathname, at)}`;
  const now = Math.floor(Date.now() / 1000);
  assert.equal(await status(signed(now + 60)), 200, 'signed with the same key and a later expiry');
  assert.equal(await status(signed(now - 1)), 403, 'expired');
});

test('SDQL_MAX_QUEUED: beyond it generate is QUOTA_EXCEEDED and stores nothing', async () => {
  const blocker = (await api.data(GENERATE, { input: BLOCKER }, admin)).generate;
  await waitForStatus(api.server.url, blocker.id, ['RUNNING'], undefined, admin);
  const bobsQueued = () => api.server.app.db.prisma.generation.findMany({ where: { owner: 'bob', status: 'QUEUED' }, orderBy: { createdAt: 'asc' } });
  // Concurrent requests cannot pass the quota together.
  const room = 3 - (await bobsQueued()).length;
  const burst = await Promise.all(Array.from({ length: room + 4 }, (_, i) => api.gql(GENERATE, { input: { modelId: 'demo', prompt: `bob ${i}`, steps: 1 } }, tokens.bob)));
  assert.equal(burst.filter((r) => r.data?.generate).length, room);
  assert.deepEqual(new Set(burst.filter((r) => !r.data?.generate).map(code)), new Set(['QUOTA_EXCEEDED']));
  assert.equal((await bobsQueued()).length, 3);
  const stored = await api.server.app.db.prisma.generation.count();
  const inputs = join(api.config.dataDir, 'inputs');
  const files = () => (existsSync(inputs) ? readdirSync(inputs).length : 0);
  const filesBefore = files();
  const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#808080' } }).png().toBuffer();
  for (const input of [
    { modelId: 'demo', prompt: 'one more', steps: 1 },
    { modelId: 'demo', prompt: 'one more', steps: 2, initImage: { dataUrl: `data:image/png;base64,${png.toString('base64')}` } },
  ]) {
    const refused = await api.gql(GENERATE, { input }, tokens.bob);
    assert.equal(code(refused), 'QUOTA_EXCEEDED', JSON.stringify(refused.errors));
    assert.match(refused.errors![0].message, /"bob" has 3 generations and upscales queued.*SDQL_MAX_QUEUED/);
  }
  assert.equal(await api.server.app.db.prisma.generation.count(), stored, 'nothing stored');
  assert.equal(files(), filesBefore, 'no input file left');
  // The quota is per owner, and frees up as generations leave the queue.
  assert.equal((await api.data(GENERATE, { input: { modelId: 'demo', prompt: 'alice', steps: 1 } }, tokens.alice)).generate.status, 'QUEUED');
  const [oldest] = await bobsQueued();
  await api.data('mutation($id: ID!) { cancelGeneration(id: $id) { id } }', { id: oldest.id }, tokens.bob);
  assert.equal((await api.data(GENERATE, { input: { modelId: 'demo', prompt: 'bob again', steps: 1 } }, tokens.bob)).generate.status, 'QUEUED');
  await api.data(`mutation { cancelGeneration(id: "${blocker.id}") { id } }`, {}, admin);
});

test('a revoked token is refused from the next request on; its generations stay, owned by its name', async () => {
  const open = api.wsClient(tokens.bob);
  await collectWs(open, 'subscription { queue { queued { id } } }').next('the queue over an open connection');
  assert.equal((await api.data('mutation { revokeToken(name: "bob") { name scopes } }', {}, admin)).revokeToken.name, 'bob');
  const refused = await post({ query: '{ generations(first: 1) { edges { node { id } } } }' }, bearer(tokens.bob));
  assert.equal(refused.status, 401);
  assert.equal(code(refused.body), 'UNAUTHENTICATED');
  assert.equal((await refusedWs({ authorization: `Bearer ${tokens.bob}` })).code, 4401);
  // A connection opened before is refused its next operation.
  await assert.rejects(collectWs(open, 'subscription { queue { queued { id } } }').done(), /UNAUTHENTICATED/);
  assert.equal(code(await api.gql('mutation { revokeToken(name: "bob") { name } }', {}, admin)), 'NOT_FOUND');
  const { generations } = await api.data('{ generations(first: 100) { edges { node { owner } } } }', {}, admin);
  assert.ok(generations.edges.some((e: { node: { owner: string } }) => e.node.owner === 'bob'));
  assert.deepEqual((await api.data('{ tokens { name } }', {}, admin)).tokens.map((t: { name: string }) => t.name), ['admin', 'reader', 'alice']);
});

test("AUTOMATIC1111's REST API takes the same tokens, as Bearer or as HTTP Basic's password; without one it is 401", async () => {
  const rest = (path: string, authorization?: string) =>
    fetch(`${api.server.url}/sdapi/v1/${path}`, { headers: authorization ? { authorization } : {} });
  assert.equal((await rest('sd-models')).status, 401);
  assert.equal((await rest('sd-models', 'Bearer sdql_not-a-token')).status, 401);
  assert.equal((await rest('sd-models', `Bearer ${admin}`)).status, 200);
  const basic = `Basic ${Buffer.from(`anyone:${admin}`).toString('base64')}`;
  const models = await rest('sd-models', basic);
  assert.equal(models.status, 200);
  assert.ok(((await models.json()) as unknown[]).length > 0);
});
