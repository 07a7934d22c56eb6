// Documents that would exhaust memory or stall every client are refused before they run, with a
// code and a message that names the limit, over HTTP and WebSocket; the server keeps answering.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { getIntrospectionQuery } from 'graphql';
import WebSocket from 'ws';
import { MAX_MESSAGE_BYTES } from '../../src/server/limits.ts';
import { startTestServer, type TestServer } from '../helpers/api.ts';

let api: TestServer;
before(async () => {
  api = await startTestServer();
});
after(() => api?.close());

const nested = (levels: number) => {
  let selection = '{ id }';
  for (let i = 0; i < levels; i++) selection = i % 2 === 0 ? `{ images ${selection} }` : `{ generation ${selection} }`;
  return `{ generation(id: "x") ${selection} }`;
};

const ABUSIVE: Record<string, string> = {
  'images and generations nested five levels and more': nested(9),
  'deep nesting': nested(17),
  'thousands of aliases': `{ ${Array.from({ length: 5000 }, (_, i) => `a${i}: generations(first: 100) { pageInfo { hasNextPage } }`).join(' ')} }`,
  'a million tokens': `{ ${'system { version } '.repeat(250_000)} }`,
  'many directives': `{ system { version ${'@include(if: true) '.repeat(200)} } }`,
};

for (const [name, query] of Object.entries(ABUSIVE)) {
  test(`refused: ${name}`, async () => {
    const response = await api.gql(query);
    assert.equal(response.errors?.[0]?.extensions?.code, 'QUERY_TOO_COMPLEX', JSON.stringify(response.errors?.[0]));
    assert.match(response.errors![0].message, /limit/i);
    assert.equal(response.data, undefined, 'nothing ran');
    assert.ok((await api.data<any>('{ system { version } }')).system.version, 'the server still answers');
  });
}

test("GraphiQL's full introspection and a deep legitimate query pass", async () => {
  const introspection = await api.gql(getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true, inputValueDeprecation: true }));
  assert.equal(introspection.errors, undefined);
  const history = await api.gql(`{ generations(first: 100) { pageInfo { hasNextPage endCursor } edges { cursor node { id status images { url width height generation { id prompt } } } } } }`);
  assert.equal(history.errors, undefined, JSON.stringify(history.errors));
});

test('a graphql-ws message over the body limit closes that socket only', async () => {
  const socket = new WebSocket(`${api.server.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  const closed = new Promise<number>((resolve) => socket.once('close', resolve));
  socket.send(JSON.stringify({ type: 'connection_init' }));
  await new Promise((resolve) => socket.once('message', resolve));
  socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: '{ system { version } }', variables: { pad: 'x'.repeat(MAX_MESSAGE_BYTES) } } }));
  assert.equal(await closed, 1009, 'message too big');
  assert.ok((await api.data<any>('{ system { version } }')).system.version);
});

test('the same limits hold over WebSocket', async () => {
  const client = api.wsClient();
  const result = await new Promise<any>((resolve, reject) => {
    let received: unknown;
    client.subscribe({ query: nested(9) }, { next: (r) => (received = r), error: resolve, complete: () => reject(new Error(`accepted: ${JSON.stringify(received)}`)) });
  });
  assert.equal(result[0]?.extensions?.code, 'QUERY_TOO_COMPLEX', JSON.stringify(result));
});
