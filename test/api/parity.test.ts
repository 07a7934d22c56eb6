// The reference cases of ../shared/reference through the public API: generate, wait, download the
// PNG the server serves, compare with the image diffusers produced (the reference README's tolerance).
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { startTestServer, type TestServer } from '../helpers/api.ts';
import { caseParams, compareImages, loadReference, referenceDir, skipWithoutReference } from '../helpers/reference.ts';

const GENERATION = `query($id: ID!) { generation(id: $id) { status error images { url seed } } }`;

describe('reference cases through generate', { skip: skipWithoutReference }, () => {
  const cases = referenceDir ? loadReference().cases.filter((c) => !c.case.lora) : [];
  let api: TestServer;
  let modelsDir: string;

  before(async () => {
    // Each case's model: the reference folder, or a copy with the case's scheduler config override.
    modelsDir = mkdtempSync(join(tmpdir(), 'sdql-parity-models-'));
    for (const c of cases) {
      const dir = join(modelsDir, c.case.name);
      cpSync(join(referenceDir!, 'models', c.case.model), dir, { recursive: true });
      const configPath = join(dir, 'scheduler', 'scheduler_config.json');
      const config = JSON.parse(readFileSync(configPath, 'utf8'));
      writeFileSync(configPath, JSON.stringify({ ...config, ...c.case.scheduler_config_override }));
    }
    mkdirSync(join(modelsDir, 'loras'));
    api = await startTestServer({ modelsDir });
  });
  after(async () => {
    await api?.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  for (const c of cases) {
    test(c.case.name, async () => {
      const init = c.case.init_image ? readFileSync(join(referenceDir!, c.case.init_image)) : undefined;
      const { generate } = await api.data<any>(`mutation($input: GenerateInput!) { generate(input: $input) { id } }`, {
        input: {
          modelId: c.case.name,
          ...caseParams(c),
          initImage: init ? { dataUrl: `data:image/png;base64,${init.toString('base64')}` } : undefined,
        },
      });
      let generation: any;
      for (;;) {
        generation = (await api.data<any>(GENERATION, { id: generate.id })).generation;
        if (!['QUEUED', 'RUNNING'].includes(generation.status)) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(generation.status, 'SUCCEEDED', generation.error);
      assert.equal(generation.images.length, c.images.length);
      for (const [i, expected] of c.images.entries()) {
        const image = generation.images[i];
        assert.equal(image.seed, expected.seed);
        const served = await sharp(Buffer.from(await (await fetch(image.url)).arrayBuffer())).raw().toBuffer();
        const reference = await sharp(join(referenceDir!, expected.png)).removeAlpha().raw().toBuffer();
        const { within1, maxDiff } = compareImages(served, reference);
        assert.ok(within1 >= 0.99 && maxDiff <= 4, `${expected.png}: ${(within1 * 100).toFixed(2)}% within 1 level, max ${maxDiff}`);
      }
    });
  }
});
