// The engine against diffusers 0.21.4 itself: every case of ../shared/reference/reference.json,
// compared with the images diffusers produced (the tolerance is the reference README's).
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import sharp from 'sharp';
import { Engine } from '../../src/diffusion/engine.ts';
import { quantize } from '../../src/diffusion/image.ts';
import { inspectModelFolder } from '../../src/diffusion/model-folder.ts';
import { resolveRequest } from '../../src/diffusion/request.ts';
import { caseParams, compareImages, loadReference, readNpy, referenceDir, skipWithoutReference, type ReferenceCase } from '../helpers/reference.ts';

/** The model folder a case runs on: the reference model, or a copy with its scheduler config overridden. */
function modelDirFor(c: ReferenceCase, scratch: string): string {
  const dir = join(referenceDir!, 'models', c.case.model);
  if (!c.case.scheduler_config_override) return dir;
  const copy = join(scratch, c.case.name);
  cpSync(dir, copy, { recursive: true });
  const configPath = join(copy, 'scheduler', 'scheduler_config.json');
  const config = JSON.parse(readFileSync(configPath, 'utf8'));
  writeFileSync(configPath, JSON.stringify({ ...config, ...c.case.scheduler_config_override }));
  return copy;
}

describe('parity with diffusers 0.21.4', { skip: skipWithoutReference }, () => {
  const engine = new Engine();
  const scratch = mkdtempSync(join(tmpdir(), 'sdql-parity-'));
  after(async () => {
    await engine.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  for (const c of referenceDir ? loadReference().cases : []) {
    test(c.case.name, async () => {
      const model = await inspectModelFolder(modelDirFor(c, scratch));
      const request = await resolveRequest(model, {
        ...caseParams(c),
        initImage: c.case.init_image ? readFileSync(join(referenceDir!, c.case.init_image)) : undefined,
        // diffusers' load_lora_weights with cross_attention_kwargs={"scale": weight}.
        loras: c.case.lora && [{ ...c.case.lora, path: join(referenceDir!, 'loras', `${c.case.lora.name}.safetensors`) }],
      });
      const result = await engine.run(model, request);
      assert.equal(result.images.length, c.images.length);
      for (const [i, expected] of c.images.entries()) {
        const { seed, image } = result.images[i];
        assert.equal(seed, expected.seed);
        const npy = readNpy(join(referenceDir!, expected.npy));
        assert.deepEqual(npy.shape, [image.height, image.width, 3]);
        let maxErr = 0;
        for (let j = 0; j < npy.data.length; j++) maxErr = Math.max(maxErr, Math.abs(npy.data[j] - image.data[j]));
        const png = await sharp(join(referenceDir!, expected.png)).removeAlpha().raw().toBuffer();
        const { within1, maxDiff } = compareImages(quantize(image), png);
        assert.ok(maxErr <= 1e-3, `${expected.npy}: largest float difference ${maxErr}`);
        assert.ok(within1 >= 0.99 && maxDiff <= 4, `${expected.png}: ${(within1 * 100).toFixed(2)}% within 1 level, max ${maxDiff}`);
      }
    });
  }
});
