// A web page the user visits must not drive the server: foreign Host headers (DNS rebinding),
// foreign origins over HTTP and WebSocket, and "simple" cross-site requests are refused, through
// real HTTP and WebSocket clients.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { startTestServer, waitForStatus, type TestServer } from '../helpers/api.ts';

let api: TestServer;
before(async () => {
  api = await startTestServer({ env: { SDQL_CORS_ORIGINS: 'https://studio.example', SDQL_ALLOWED_HOSTS: 'sdql.lan' } });
});
after(() => api?.close());

const QUERY = JSON.stringify({ query: '{ system { version } }' });
const DELETE = JSON.stringify({ query: 'mutation { rescanModels { scannedAt } }' });

/** A raw HTTP request, so that Host and Origin are exactly what a browser or an attacker sends. */
function send(headers: Record<string, string>, body = QUERY, path = '/graphql'): Promise<{ status: number; headers: Record<string, unknown>; body: any }> {
  const { port } = new URL(api.server.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', headers: { host: `127.0.0.1:${port}`, ...headers } }, (res) => {
      let text = '';
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const json = { 'content-type': 'application/json' };

test('requests naming a foreign host are refused on a loopback address (DNS rebinding)', async () => {
  const port = new URL(api.server.url).port;
  const refused = await send({ ...json, host: `attacker.example:${port}` });
  assert.equal(refused.status, 403);
  assert.equal(refused.body.errors[0].extensions.code, 'FORBIDDEN_ORIGIN');
  assert.match(refused.body.errors[0].message, /SDQL_ALLOWED_HOSTS/);
  for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, `sdql.lan:${port}`]) {
    assert.equal((await send({ ...json, host })).status, 200, host);
  }
});

test('pages of other origins are refused; listed ones get CORS headers for themselves only', async () => {
  const foreign = await send({ ...json, origin: 'https://evil.example' });
  assert.equal(foreign.status, 403);
  assert.match(foreign.body.errors[0].message, /SDQL_CORS_ORIGINS/);

  const listed = await send({ ...json, origin: 'https://studio.example' });
  assert.equal(listed.status, 200);
  assert.equal(listed.headers['access-control-allow-origin'], 'https://studio.example');

  const port = new URL(api.server.url).port;
  const sameOrigin = await send({ ...json, origin: `http://127.0.0.1:${port}` });
  assert.equal(sameOrigin.status, 200, 'GraphiQL, served by this server, keeps working');
  assert.notEqual(sameOrigin.headers['access-control-allow-origin'], `http://127.0.0.1:${port}`, 'origins are never reflected');
});

test('listed origins may read image files too; others get no CORS header', async () => {
  const { port } = new URL(api.server.url);
  const get = (origin: string) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/images/none.png', headers: { host: `127.0.0.1:${port}`, origin } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.headers));
      });
      req.on('error', reject);
      req.end();
    });
  assert.equal((await get('https://studio.example'))['access-control-allow-origin'], 'https://studio.example');
  assert.equal((await get(`http://127.0.0.1:${port}`))['access-control-allow-origin'], undefined);
});

test('simple requests (forms, multipart without a preflight header) cannot run operations', async () => {
  const form = await send({ 'content-type': 'application/x-www-form-urlencoded' }, `query=${encodeURIComponent('mutation { rescanModels { scannedAt } }')}`);
  assert.equal(form.status, 403);
  const text = await send({ 'content-type': 'text/plain' }, DELETE);
  assert.equal(text.status, 403);

  const boundary = 'sdqlboundary';
  const multipart = [`--${boundary}`, 'Content-Disposition: form-data; name="operations"', '', DELETE, `--${boundary}`, 'Content-Disposition: form-data; name="map"', '', '{}', `--${boundary}--`, ''].join('\r\n');
  const type = { 'content-type': `multipart/form-data; boundary=${boundary}` };
  assert.equal((await send(type, multipart)).status, 403);
  const withHeader = await send({ ...type, 'graphql-require-preflight': '1' }, multipart);
  assert.equal(withHeader.status, 200, JSON.stringify(withHeader.body));
  assert.ok(withHeader.body.data.rescanModels.scannedAt);
});

/** Opens a graphql-ws socket with the given Origin; resolves with the HTTP status of a refusal, or 101. */
function upgrade(headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${api.server.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws', { headers });
    socket.on('open', () => {
      socket.close();
      resolve(101);
    });
    socket.on('unexpected-response', (_req, res) => resolve(res.statusCode!));
    socket.on('error', reject);
  });
}

test('WebSocket upgrades from foreign origins or hosts are refused', async () => {
  const port = new URL(api.server.url).port;
  assert.equal(await upgrade({ origin: 'https://evil.example' }), 403);
  assert.equal(await upgrade({ host: `attacker.example:${port}` }), 403);
  assert.equal(await upgrade({ origin: 'https://studio.example' }), 101);
  assert.equal(await upgrade({ origin: `http://localhost:${port}`, host: `localhost:${port}` }), 101);
  assert.equal(await upgrade({}), 101, 'scripts send no Origin');
});

test('image URLs come from the address listened on, never from the Host header', async () => {
  const port = new URL(api.server.url).port;
  const { body } = await send({ ...json, host: `localhost:${port}` }, JSON.stringify({ query: 'mutation { generate(input: { modelId: "demo", prompt: "x", steps: 1 }) { id } }' }));
  const id = body.data.generate.id;
  await waitForStatus(api.server.url, id, ['SUCCEEDED']);
  const { body: read } = await send({ ...json, host: `localhost:${port}` }, JSON.stringify({ query: `{ generation(id: "${id}") { images { url } } }` }));
  assert.equal(read.data.generation.images.length, 1, 'the generation succeeded');
  assert.ok(read.data.generation.images[0].url.startsWith(`${api.server.url}/images/`), read.data.generation.images[0].url);
});
