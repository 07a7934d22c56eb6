// Init image files belong to the generations that use them: deleting the last of those removes the
// file; one still in use stays (files are stored by content, so two requests can share one).
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { startTestServer, waitForStatus, type TestServer } from '../helpers/api.ts';

let api: TestServer;
let dataUrl: string;
before(async () => {
  api = await startTestServer();
  const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#3060a0' } }).png().toBuffer();
  dataUrl = `data:image/png;base64,${png.toString('base64')}`;
});
after(() => api?.close());

const inputFiles = () => {
  const dir = join(api.config.dataDir, 'inputs');
  return existsSync(dir) ? readdirSync(dir) : [];
};

async function img2img(): Promise<string> {
  const { generate } = await api.data<any>(`mutation($input: GenerateInput!) { generate(input: $input) { id } }`, {
    input: { modelId: 'demo', prompt: 'from an image', steps: 2, strength: 0.5, initImage: { dataUrl } },
  });
  await waitForStatus(api.server.url, generate.id, ['SUCCEEDED']);
  return generate.id;
}

const remove = (id: string) => api.data<any>(`mutation($id: ID!) { deleteGeneration(id: $id) }`, { id });

test('an init image shared by two generations goes with the last of them', async () => {
  const first = await img2img();
  const second = await img2img();
  assert.equal(inputFiles().length, 1, 'the same image is stored once');
  await remove(first);
  assert.equal(inputFiles().length, 1, 'the other generation still uses it');
  await remove(second);
  assert.deepEqual(inputFiles(), []);
});
