// The hires fix against its two passes run by hand (issue 8): a hires request, and the same work as
// a txt2img at the base size then an img2img of its PNG at the hires size (what the `lanczos`
// upscaler is defined to equal). Requests alternate so that both meet the same load; the ratio of
// medians should stay at or below 1.05.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine } from '../src/diffusion/engine.ts';
import { encodeImage } from '../src/diffusion/image.ts';
import { inspectModelFolder } from '../src/diffusion/model-folder.ts';
import { resolveRequest, type GenerateParams } from '../src/diffusion/request.ts';
import type { BenchRow } from './index.ts';
import { cachedFixture, median } from './lib/common.ts';

const FIXTURE_DIR = join(dirname(fileURLToPath(import.meta.url)), 'out', 'hires-fixture');
const ROUNDS = 6;
const BASE: GenerateParams = { prompt: 'a castle on a hill', width: 128, height: 128, steps: 8, seed: 3 };
const HIRES = { scale: 2, steps: 8, strength: 0.6 };

export async function benchHires(): Promise<BenchRow[]> {
  await cachedFixture(FIXTURE_DIR, { unetChannels: [64, 128] });
  const info = await inspectModelFolder(FIXTURE_DIR);
  const engine = new Engine();
  const rows: BenchRow[] = [];
  try {
    for (const upscaler of ['lanczos', 'latent']) {
      const hires = await resolveRequest(info, { ...BASE, hires: { ...HIRES, upscaler } });
      const first = await resolveRequest(info, BASE);
      // Warm-up: sessions loaded and arenas sized before anything is timed.
      await engine.run(info, hires);
      const together: number[] = [];
      const byHand: number[] = [];
      const runTogether = async () => {
        const started = performance.now();
        await engine.run(info, hires);
        together.push(performance.now() - started);
      };
      const runByHand = async () => {
        const started = performance.now();
        const { images } = await engine.run(info, first);
        const png = await encodeImage(images[0].image, 'png');
        await engine.run(info, await resolveRequest(info, { ...BASE, initImage: png, width: hires.hires!.width, height: hires.hires!.height, steps: HIRES.steps, strength: HIRES.strength }));
        byHand.push(performance.now() - started);
      };
      // Each goes first in every other round, so that neither always meets the other's aftermath.
      for (let round = 0; round < ROUNDS; round++) {
        if (round % 2) {
          await runByHand();
          await runTogether();
        } else {
          await runTogether();
          await runByHand();
        }
      }
      const note = `${BASE.width}→${hires.hires!.width} px, ${BASE.steps} + ${HIRES.steps}×${HIRES.strength} steps, median of ${ROUNDS}`;
      rows.push(
        { metric: `hires (${upscaler}) request`, value: median(together), unit: 'ms', note },
        { metric: `hires (${upscaler}) two passes by hand`, value: median(byHand), unit: 'ms', note: 'txt2img, PNG, img2img' },
        { metric: `hires (${upscaler}) / by hand`, value: median(together) / median(byHand), unit: '×', note: 'target ≤ 1.05' },
      );
    }
  } finally {
    await engine.close();
  }
  return rows;
}
