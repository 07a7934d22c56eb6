// The engine against diffusers 0.21.4 itself: every case of the reference sets (../shared/reference
// and the sub-folders in PARITY_SETS), compared with the images diffusers produced (the tolerance is
// the reference README's).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Engine } from '../../src/diffusion/engine.ts';
import { quantize } from '../../src/diffusion/image.ts';
import { inspectModelFolder } from '../../src/diffusion/model-folder.ts';
import { resolveRequest } from '../../src/diffusion/request.ts';
import { assertMatchesPng, caseParams, loadReference, loraPath, PARITY_SETS, placeCaseModel, readNpy } from '../helpers/reference.ts';

describe('parity with diffusers 0.21.4', () => {
  const engine = new Engine();
  const scratch = mkdtempSync(join(tmpdir(), 'sdql-parity-'));
  after(async () => {
    await engine.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  for (const set of PARITY_SETS.map(loadReference)) {
    for (const c of set.cases) {
      test(set.label(c), async (t) => {
        const model = await inspectModelFolder(placeCaseModel(set, c, scratch, set.label(c).replace('/', '--')));
        const request = await resolveRequest(model, {
          ...caseParams(c),
          initImage: c.case.init_image ? readFileSync(set.file(c.case.init_image)) : undefined,
          mask: c.case.mask_image ? readFileSync(set.file(c.case.mask_image)) : undefined,
          // diffusers' load_lora_weights with cross_attention_kwargs={"scale": weight}.
          loras: c.case.lora && [{ ...c.case.lora, path: loraPath(c.case.lora.name) }],
        });
        const result = await engine.run(model, request);
        assert.equal(result.images.length, c.images.length);
        for (const [i, expected] of c.images.entries()) {
          const { seed, image } = result.images[i];
          assert.equal(seed, expected.seed);
          const npy = readNpy(set.file(expected.npy));
          assert.deepEqual(npy.shape, [image.height, image.width, 3]);
          let maxErr = 0;
          for (let j = 0; j < npy.data.length; j++) maxErr = Math.max(maxErr, Math.abs(npy.data[j] - image.data[j]));
          const measured = await assertMatchesPng(quantize(image), set.file(expected.png));
          assert.ok(maxErr <= 1e-3, `${expected.npy}: largest float difference ${maxErr}`);
          t.diagnostic(`${expected.png}: ${measured}; npy off by at most ${maxErr.toExponential(2)}`);
        }
      });
    }
  }
});
