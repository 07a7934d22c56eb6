// The reference cases (../shared/reference and the sub-folders in PARITY_SETS) through the public
// API: generate, wait for the end of its progress stream, download the PNG the server serves, compare
// with the image diffusers produced (the reference README's tolerance).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { collectSse, startTestServer, type TestServer } from '../helpers/api.ts';
import { assertMatchesPng, caseParams, loadReference, PARITY_SETS, placeCaseModel, referenceDir } from '../helpers/reference.ts';

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id } }`;
const PROGRESS = `subscription($id: ID!) { generationProgress(id: $id) { status } }`;
const GENERATION = `query($id: ID!) { generation(id: $id) { status error images { url seed } } }`;

describe('reference cases through generate', () => {
  const sets = PARITY_SETS.map(loadReference);
  /** Each case's model id: its folder in the server's models folder. */
  const modelId = (label: string) => label.replace('/', '--');
  let api: TestServer;
  let modelsDir: string;

  before(async () => {
    modelsDir = mkdtempSync(join(tmpdir(), 'sdql-parity-models-'));
    for (const set of sets) for (const c of set.cases) placeCaseModel(set, c, modelsDir, modelId(set.label(c)));
    api = await startTestServer({ modelsDir, env: { SDQL_LORAS_DIR: join(referenceDir, 'loras') } });
  });
  after(async () => {
    await api?.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  for (const set of sets) {
    for (const c of set.cases) {
      test(set.label(c), async (t) => {
        const dataUrl = (path: string | undefined) => path && { dataUrl: `data:image/png;base64,${readFileSync(set.file(path)).toString('base64')}` };
        const { generate } = await api.data<any>(GENERATE, {
          input: {
            modelId: modelId(set.label(c)),
            ...caseParams(c),
            initImage: dataUrl(c.case.init_image),
            mask: dataUrl(c.case.mask_image),
            loras: c.case.lora && [{ id: c.case.lora.name, weight: c.case.lora.weight }],
          },
        });
        // The stream ends with the generation's final status.
        await collectSse(api.server.url, PROGRESS, { id: generate.id }).done();
        const { generation } = await api.data<any>(GENERATION, { id: generate.id });
        assert.equal(generation.status, 'SUCCEEDED', generation.error);
        assert.equal(generation.images.length, c.images.length);
        for (const [i, expected] of c.images.entries()) {
          const image = generation.images[i];
          assert.equal(image.seed, expected.seed);
          const served = await sharp(Buffer.from(await (await fetch(image.url)).arrayBuffer())).raw().toBuffer();
          t.diagnostic(`${expected.png}: ${await assertMatchesPng(served, set.file(expected.png))}`);
        }
      });
    }
  }
});
