// pullModel through the API, against a stand-in Hub: the job, its progress over graphql-ws and SSE,
// the rescan, failures as job errors, bad input refused at submission, and the ADMIN scope.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { collectSse, collectWs, startTestServer, type TestServer } from '../helpers/api.ts';
import { StandInHub, writeHubRepos } from '../helpers/hub.ts';

const PULL = `mutation($repo: String!, $revision: String, $subfolder: String, $file: String, $name: String) {
  pullModel(repo: $repo, revision: $revision, subfolder: $subfolder, file: $file, name: $name) { id name status }
}`;
const PROGRESS = `subscription($id: ID!) {
  modelPullProgress(id: $id) { id status kind files filesDone bytesDone bytesTotal error errorCode finishedAt model { name supported } }
}`;

interface PullEvent {
  modelPullProgress: {
    status: string;
    kind: string | null;
    files: string[];
    filesDone: number;
    bytesDone: number;
    bytesTotal: number;
    error: string | null;
    errorCode: string | null;
    finishedAt: string | null;
    model: { name: string; supported: boolean } | null;
  };
}

describe('pullModel', () => {
  let root: string;
  let hub: StandInHub;
  let api: TestServer;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'sdql-hub-api-'));
    hub = await new StandInHub(await writeHubRepos(root)).start();
    api = await startTestServer({ env: { HF_ENDPOINT: hub.url } });
  });
  after(async () => {
    await api?.close();
    await hub?.close();
    await rm(root, { recursive: true, force: true });
  });

  test('pulls an ONNX pipeline in the background; graphql-ws streams its progress; then models lists it', async () => {
    const { pullModel } = await api.data(PULL, { repo: 'org/tiny-sd-onnx', name: 'pulled' });
    assert.equal(pullModel.name, 'pulled');
    assert.equal(pullModel.status, 'RUNNING');
    const events = (await collectWs<PullEvent>(api.wsClient(), PROGRESS, { id: pullModel.id }).done()).map((e) => e.modelPullProgress);
    const last = events.at(-1)!;
    assert.equal(last.status, 'SUCCEEDED', last.error ?? '');
    assert.equal(last.kind, 'ONNX');
    assert.ok(last.files.includes('unet/model.onnx_data') && last.files.includes('model_index.json'));
    assert.ok(!last.files.some((f) => f.endsWith('.safetensors') || f.startsWith('safety_checker/')), 'skips what sdql does not run');
    const expected = last.files.reduce((sum, f) => sum + hub.file('org/tiny-sd-onnx', f).content.length, 0);
    assert.equal(last.bytesTotal, expected);
    assert.equal(last.bytesDone, expected);
    assert.equal(last.filesDone, last.files.length);
    assert.deepEqual(last.model, { name: 'pulled', supported: true });
    for (let i = 1; i < events.length; i++) assert.ok(events[i].bytesDone >= events[i - 1].bytesDone, 'progress only grows');
    const { models } = await api.data('{ models { name supported } }');
    assert.ok(models.some((m: { name: string; supported: boolean }) => m.name === 'pulled' && m.supported));
    const { modelPulls } = await api.data('{ modelPulls { id status } }');
    assert.deepEqual(modelPulls[0], { id: pullModel.id, status: 'SUCCEEDED' });
  });

  test('SSE streams it too; a failure is the job\'s error, with what to do', async () => {
    const { pullModel } = await api.data(PULL, { repo: 'org/gated' });
    const events = await collectSse<PullEvent>(api.server.url, PROGRESS, { id: pullModel.id }).done();
    const last = events.at(-1)!.modelPullProgress;
    assert.equal(last.status, 'FAILED');
    assert.equal(last.errorCode, 'UNAUTHORIZED');
    assert.match(last.error!, /set HF_TOKEN/);
    assert.ok(last.finishedAt);
    assert.equal(last.model, null);
    const missing = await api.data(PULL, { repo: 'org/pytorch-only' });
    const done = (await collectWs<PullEvent>(api.wsClient(), PROGRESS, { id: missing.pullModel.id }).done()).at(-1)!.modelPullProgress;
    assert.equal(done.errorCode, 'NO_MODEL');
    const { modelPull } = await api.data('query($id: ID!) { modelPull(id: $id) { status errorCode } }', { id: missing.pullModel.id });
    assert.deepEqual(modelPull, { status: 'FAILED', errorCode: 'NO_MODEL' });
  });

  test('bad input is BAD_USER_INPUT at submission and starts nothing', async () => {
    const before = (await api.data('{ modelPulls { id } }')).modelPulls.length;
    const requests = hub.requests.length;
    for (const [variables, message] of [
      [{ repo: 'not a repo' }, /is not a Hugging Face repository id/],
      [{ repo: 'org/tiny-sd-onnx', name: 'demo' }, /a model named "demo" is in .* already/],
      [{ repo: 'org/tiny-sd-onnx', name: '../x' }, /cannot name a model/],
      [{ repo: 'org/tiny-sd-onnx', subfolder: '../up' }, /is not a path inside a repository/],
      [{ repo: 'org/tiny-sd-onnx', file: 'model.ckpt' }, /is not a \.safetensors checkpoint/],
    ] as const) {
      const result = await api.gql(PULL, variables);
      assert.equal(result.errors?.[0].extensions?.code, 'BAD_USER_INPUT', JSON.stringify(variables));
      assert.match(result.errors![0].message, message);
    }
    assert.equal((await api.data('{ modelPulls { id } }')).modelPulls.length, before);
    assert.equal(hub.requests.length, requests, 'nothing asked of the Hub');
    assert.ok(!readdirSync(api.config.modelsDir).some((e) => e.startsWith('.partial-') || e === 'x'));
    const unknown = await api.gql('query { modelPull(id: "nope") { id } }');
    assert.equal(unknown.errors?.[0].extensions?.code, 'NOT_FOUND');
  });
});

test('pullModel, modelPull(s) and modelPullProgress need the ADMIN scope', async () => {
  const api = await startTestServer({ env: { SDQL_AUTH: 'tokens', HF_ENDPOINT: 'http://127.0.0.1:9' } });
  try {
    const admin = api.adminToken!;
    const { createToken } = await api.data('mutation { createToken(name: "painter", scopes: [GENERATE]) { token } }', {}, admin);
    for (const query of [PULL, '{ modelPulls { id } }', 'query { modelPull(id: "x") { id } }']) {
      const result = await api.gql(query, { repo: 'org/x' }, createToken.token);
      assert.equal(result.errors?.[0].extensions?.code, 'FORBIDDEN', query);
      assert.match(result.errors![0].message, /needs a token with the ADMIN scope/);
    }
    await assert.rejects(collectWs(api.wsClient(createToken.token), PROGRESS, { id: 'x' }).done(), /ADMIN scope/);
    const { pullModel } = await api.data(PULL, { repo: 'org/x' }, admin);
    const last = (await collectWs<PullEvent>(api.wsClient(admin), PROGRESS, { id: pullModel.id }).done()).at(-1)!.modelPullProgress;
    assert.equal(last.errorCode, 'DOWNLOAD_FAILED');
    assert.match(last.error!, /cannot reach the Hub at http:\/\/127\.0\.0\.1:9/);
  } finally {
    await api.close();
  }
});
