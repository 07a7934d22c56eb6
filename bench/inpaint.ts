// Editing (issue 8's performance section): what ONLY_MASKED saves. A small mask (32×32 px) on a
// large init image (512×512, 16 times the fixture's native size) inpainted at the whole picture's
// size, against the same mask with ONLY_MASKED, which crops the mask's box with its padding and
// paints it at the model's native size (128×128 here), then pastes it back. Both run through the
// engine alone (in-process Engine.run), alternating so that both meet the same load on the machine.
// (The fixture's attention is full-resolution: at 1024×1024 it would need some 17 GB.)
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { Engine } from '../src/diffusion/engine.ts';
import { type FixtureOptions } from '../src/diffusion/fixtures/index.ts';
import { inspectModelFolder } from '../src/diffusion/model-folder.ts';
import { resolveRequest, type GenerateParams } from '../src/diffusion/request.ts';
import type { BenchRow } from './index.ts';
import { cachedFixture, median } from './lib/common.ts';

const FIXTURE: FixtureOptions = { sampleSize: 16 };
const FIXTURE_DIR = join(dirname(fileURLToPath(import.meta.url)), 'out', 'inpaint', 'model');
const SIDE = 512;
const MASK = { left: 300, top: 150, side: 32 };
const ROUNDS = 3;

export async function benchInpaint(): Promise<BenchRow[]> {
  await cachedFixture(FIXTURE_DIR, FIXTURE);
  const model = await inspectModelFolder(FIXTURE_DIR);
  const initImage = await sharp({ create: { width: SIDE, height: SIDE, channels: 3, background: '#4080c0' } }).png().toBuffer();
  const grey = Buffer.alloc(SIDE * SIDE);
  for (let y = MASK.top; y < MASK.top + MASK.side; y++) grey.fill(255, y * SIDE + MASK.left, y * SIDE + MASK.left + MASK.side);
  const mask = await sharp(grey, { raw: { width: SIDE, height: SIDE, channels: 1 } }).png().toBuffer();
  const base: GenerateParams = { prompt: 'a window', steps: 4, seed: 1, initImage, mask };
  const whole = await resolveRequest(model, { ...base, inpaintArea: 'WHOLE_PICTURE' });
  const onlyMasked = await resolveRequest(model, { ...base, inpaintArea: 'ONLY_MASKED' });
  const engine = new Engine();
  try {
    const time = async (request: typeof whole) => {
      const started = performance.now();
      await engine.run(model, request);
      return performance.now() - started;
    };
    // Warm: the sessions loaded and onnxruntime's arenas grown for both sizes.
    await time(whole);
    await time(onlyMasked);
    const wholeMs: number[] = [];
    const maskedMs: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      wholeMs.push(await time(whole));
      maskedMs.push(await time(onlyMasked));
    }
    const ratios = maskedMs.map((ms, i) => ms / wholeMs[i]);
    const note = `${MASK.side}×${MASK.side} mask on ${SIDE}×${SIDE}, ${base.steps} steps, median of ${ROUNDS}`;
    return [
      { metric: `WHOLE_PICTURE (${whole.width}×${whole.height})`, value: median(wholeMs), unit: 'ms', note },
      { metric: `ONLY_MASKED (${onlyMasked.width}×${onlyMasked.height})`, value: median(maskedMs), unit: 'ms', note },
      { metric: 'ONLY_MASKED / WHOLE_PICTURE', value: median(ratios), unit: '×', note: `paired rounds, range ${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}` },
    ];
  } finally {
    await engine.close();
  }
}
