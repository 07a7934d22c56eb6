// Device check (issue 11): one pipeline of random weights, 512², 50 steps, batch 1 with classifier-free
// guidance (the UNet on batch 2), on each execution provider that works on this machine, against the
// CPU in the same run. Prints seconds per image and per step, the providers of each submodel, and the
// ratio to the CPU. The CPU runs `--cpu-steps` steps only (an SD 1.5 step takes seconds there), so
// its per-image time is its text encoder and VAE plus the full step count at its measured step time.
//
//   npm run bench -- gpu                                   # on a GPU machine: 512², 50 steps
//   npm run bench -- gpu --size 256 --steps 4 --cpu-steps 2 # a quick look on a CPU
//   npm run bench -- gpu --providers cuda,cpu              # these only (default: cpu and every one that works)
import { SD15 } from '../src/diffusion/convert/architecture.ts';
import { Engine } from '../src/diffusion/engine.ts';
import { inspectModelFolder, type ModelFolderInfo } from '../src/diffusion/model-folder.ts';
import { checkProviders } from '../src/diffusion/providers.ts';
import { resolveRequest } from '../src/diffusion/request.ts';
import type { BenchOptions, BenchRow } from './index.ts';
import { cachedRandomPipeline, SD15_DIR } from './lib/common.ts';

/** Tried when --providers is not given; TensorRT is left out (it builds an engine per shape, minutes). */
const GPU_PROVIDERS = ['cuda', 'webgpu', 'dml', 'coreml'];

/** The pipeline the check runs: SD 1.5's architecture with random weights, built once (the size is the request's). */
async function sd15Pipeline(dir: string): Promise<{ model: ModelFolderInfo; label: string }> {
  await cachedRandomPipeline(dir, SD15);
  return { model: await inspectModelFolder(dir), label: 'SD 1.5 architecture, random weights' };
}

interface Measured {
  perImageMs: number;
  perStepMs: number;
  loadMs: number;
  submodels: string;
}

async function measure(model: ModelFolderInfo, providers: string[], size: number, steps: number): Promise<Measured> {
  const engine = new Engine({ runtime: { executionProviders: providers } });
  try {
    const params = { prompt: 'a photograph of an astronaut riding a horse', negativePrompt: 'blurry', width: size, height: size, seed: 1 };
    const loadStarted = performance.now();
    // The warm-up also pays the load and each provider's first-run work (kernel selection, allocations).
    await engine.run(model, await resolveRequest(model, { ...params, steps: 2 }));
    const loadMs = performance.now() - loadStarted;
    const { timings } = await engine.run(model, await resolveRequest(model, { ...params, steps }));
    const perStepMs = timings.denoisingMs / steps;
    const [status] = engine.models();
    const submodels = status.submodels.map((s) => `${s.name}=${s.providers.join('+')}`).join(' ');
    return { perImageMs: timings.textEncodingMs + timings.vaeMs + steps * perStepMs, perStepMs, loadMs, submodels };
  } finally {
    await engine.close();
  }
}

export async function benchGpu(options: BenchOptions): Promise<BenchRow[]> {
  const size = Number(options.size ?? 512);
  const steps = Number(options.steps ?? 50);
  const cpuSteps = Number(options['cpu-steps'] ?? 5);
  if (![size, steps, cpuSteps].every((n) => Number.isInteger(n) && n > 0) || size % 64) throw new Error('--size must be a multiple of 64; --steps and --cpu-steps positive whole numbers');
  let providers = options.providers?.split(',').map((p) => p.trim()) ?? ['cpu'];
  if (!options.providers) {
    for (const provider of GPU_PROVIDERS) {
      if (await checkProviders([provider]).then(() => true, (error: Error) => (process.stderr.write(`gpu: skipping ${error.message}\n`), false))) providers.push(provider);
    }
  } else await checkProviders(providers);
  providers = [...new Set(providers)];

  const { model, label } = await sd15Pipeline(SD15_DIR);
  const rows: BenchRow[] = [{ metric: 'pipeline', value: label, note: `${size}×${size}, batch 1, guidance 7.5 (UNet batch 2), ${steps} steps` }];
  const results = new Map<string, Measured>();
  for (const provider of providers) {
    process.stderr.write(`gpu: ${provider}…\n`);
    const runSteps = provider === 'cpu' ? Math.min(cpuSteps, steps) : steps;
    const m = await measure(model, provider === 'cpu' ? ['cpu'] : [provider, 'cpu'], size, runSteps);
    // Per image at the full step count: the CPU ran fewer steps (see the header).
    m.perImageMs += (steps - runSteps) * m.perStepMs;
    results.set(provider, m);
    const ran = runSteps === steps ? `${steps} steps measured` : `${runSteps} steps measured, ${steps} at that step time`;
    rows.push(
      { metric: `${provider}: per image`, value: m.perImageMs / 1000, unit: 's', note: ran },
      { metric: `${provider}: per step`, value: m.perStepMs / 1000, unit: 's', note: 'UNet on batch 2, scheduler and guidance included' },
      { metric: `${provider}: first load + warm-up`, value: m.loadMs / 1000, unit: 's' },
      { metric: `${provider}: submodels`, value: m.submodels },
    );
  }
  const cpu = results.get('cpu');
  for (const [provider, m] of results) {
    if (provider === 'cpu' || !cpu) continue;
    rows.push(
      { metric: `${provider} ÷ cpu: per image`, value: m.perImageMs / cpu.perImageMs, note: 'same run' },
      { metric: `${provider} ÷ cpu: per step`, value: m.perStepMs / cpu.perStepMs, note: 'same run' },
    );
  }
  return rows;
}
