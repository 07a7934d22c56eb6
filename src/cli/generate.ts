// `sdql generate`: one request through the engine, straight to image files, with a progress bar.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config.ts';
import { engineOptions } from '../app/index.ts';
import {
  DEFAULTS,
  DiffusionError,
  Engine,
  INPAINT_AREAS,
  INPAINT_DEFAULTS,
  INPAINT_FILLS,
  INPAINT_LIMITS,
  PROMPT_SYNTAXES,
  SCHEDULE_TYPES,
  SCHEDULER_NAMES,
  encodeImageWithInfo,
  folderAdapterSource,
  formatInfotext,
  infotextAdapters,
  inpaintInfotext,
  inspectModelFolder,
  prepareRequest,
  sha256File,
  type ImageFormat,
  type PromptSyntax,
} from '../diffusion/index.ts';
import { ProgressBar } from './progress.ts';

export const GENERATE_HELP = `Usage: sdql generate --model <folder or id> --prompt <text> [options]

Runs one generation on this machine and writes the images (no server needed).

Options:
  --model <folder|id>       a model folder, or the id of a folder in SDQL_MODELS_DIR
  --prompt <text>           what to draw
  --negative-prompt <text>  what to steer away from
  --seed <n>                0 to 4294967295; image i uses seed + i (random when left out)
  --steps <n>               denoising steps, 1 to 150 (default ${DEFAULTS.steps})
  --scheduler <name>        ${SCHEDULER_NAMES.join(', ')} (default ${DEFAULTS.scheduler})
  --schedule-type <type>    ${SCHEDULE_TYPES.join(', ')} (default ${DEFAULTS.scheduleType}; KARRAS and EXPONENTIAL for LMS, EULER, HEUN, DPMPP_2M, DPMPP_2M_SDE, UNIPC)
  --clip-skip <n>           AUTOMATIC1111's Clip skip, 1 to 12 (default ${DEFAULTS.clipSkip})
  --guidance-scale <x>      classifier-free guidance scale (default ${DEFAULTS.guidanceScale})
  --guidance-rescale <x>    0 to 1 (default 0)
  --prompt-syntax <s>       A1111 (weights, long prompts, [edits], <lora:name:w> tags) or PLAIN (default ${DEFAULTS.promptSyntax})
  --eta <x>                 DDIM's eta (default 0)
  --size <W>x<H>            image size, at most the model's pixel limit: 768x768 for SD 1.x and 2.x,
                            1024x1024 for SDXL (default: the model's native size, or the init image's)
  --num-images <n>          1 to 16 (default 1)
  --init <image>            PNG, JPEG or WebP init image: img2img
  --strength <x>            img2img strength in (0, 1] (default ${DEFAULTS.strength}; ${INPAINT_DEFAULTS.strength} with --mask)
  --mask <image>            inpainting: an image the size of --init, white repaints, black keeps
  --invert-mask             repaint the black part of the mask instead
  --mask-blur <px>          Gaussian blur of the mask, 0 to ${INPAINT_LIMITS.maxMaskBlur} (default ${INPAINT_DEFAULTS.maskBlur})
  --inpaint-fill <fill>     what the masked area starts from: ${INPAINT_FILLS.join(', ')} (default ${INPAINT_DEFAULTS.inpaintFill})
  --inpaint-area <area>     ${INPAINT_AREAS.join(' or ')} (default ${INPAINT_DEFAULTS.inpaintArea})
  --only-masked-padding <px>  ONLY_MASKED: context around the mask, 0 to ${INPAINT_LIMITS.maxPadding} (default ${INPAINT_DEFAULTS.onlyMaskedPadding})
  -o, --output <file>       .png, .jpg or .webp (default out.png); several images get -0, -1, … suffixes
`;

const FORMATS: Record<string, ImageFormat> = { '.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg', '.webp': 'webp' };

export async function generateCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      prompt: { type: 'string' },
      'negative-prompt': { type: 'string' },
      seed: { type: 'string' },
      steps: { type: 'string' },
      scheduler: { type: 'string' },
      'schedule-type': { type: 'string' },
      'clip-skip': { type: 'string' },
      'guidance-scale': { type: 'string' },
      'guidance-rescale': { type: 'string' },
      'prompt-syntax': { type: 'string' },
      eta: { type: 'string' },
      size: { type: 'string' },
      'num-images': { type: 'string' },
      init: { type: 'string' },
      strength: { type: 'string' },
      mask: { type: 'string' },
      'invert-mask': { type: 'boolean' },
      'mask-blur': { type: 'string' },
      'inpaint-fill': { type: 'string' },
      'inpaint-area': { type: 'string' },
      'only-masked-padding': { type: 'string' },
      output: { type: 'string', short: 'o', default: 'out.png' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(GENERATE_HELP);
    return 0;
  }
  if (!values.model || values.prompt === undefined) {
    process.stderr.write(`--model and --prompt are required\n\n${GENERATE_HELP}`);
    return 2;
  }
  const format = FORMATS[extname(values.output).toLowerCase()];
  if (!format) {
    process.stderr.write(`--output must end in .png, .jpg or .webp, got ${values.output}\n`);
    return 2;
  }
  const number = (name: string, text: string | undefined) => {
    if (text === undefined) return undefined;
    const n = Number(text);
    if (text.trim() === '' || !Number.isFinite(n)) throw new DiffusionError('BAD_USER_INPUT', `--${name} must be a number, got "${text}"`);
    return n;
  };
  const size = values.size?.match(/^(\d+)x(\d+)$/i);
  if (values.size && !size) {
    process.stderr.write(`--size must look like 512x512, got ${values.size}\n`);
    return 2;
  }

  const config = loadConfig({}, process.env);
  const options = await engineOptions(config).catch((error: Error) => {
    process.stderr.write(`sdql generate: ${error.message}\n`);
  });
  if (!options) return 1;
  const engine = new Engine(options);
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
  try {
    const model = await inspectModelFolder(resolveModelDir(values.model, config.modelsDir));
    const promptSyntax = (values['prompt-syntax']?.toUpperCase() ?? DEFAULTS.promptSyntax) as PromptSyntax;
    if (!PROMPT_SYNTAXES.includes(promptSyntax)) throw new DiffusionError('BAD_USER_INPUT', `--prompt-syntax must be A1111 or PLAIN, got "${values['prompt-syntax']}"`);
    const initImage = readInput('init', values.init);
    const mask = readInput('mask', values.mask);
    const params = {
      prompt: values.prompt,
      promptSyntax,
      negativePrompt: values['negative-prompt'],
      seed: number('seed', values.seed),
      steps: number('steps', values.steps),
      scheduler: values.scheduler?.toUpperCase(),
      scheduleType: values['schedule-type']?.toUpperCase(),
      clipSkip: number('clip-skip', values['clip-skip']),
      guidanceScale: number('guidance-scale', values['guidance-scale']),
      guidanceRescale: number('guidance-rescale', values['guidance-rescale']),
      eta: number('eta', values.eta),
      width: size ? Number(size[1]) : undefined,
      height: size ? Number(size[2]) : undefined,
      numImages: number('num-images', values['num-images']),
      strength: number('strength', values.strength),
      // The engine checks these (and refuses them without a mask) as it does the API's.
      invertMask: values['invert-mask'],
      maskBlur: number('mask-blur', values['mask-blur']),
      inpaintFill: values['inpaint-fill']?.toUpperCase(),
      inpaintArea: values['inpaint-area']?.toUpperCase(),
      onlyMaskedPadding: number('only-masked-padding', values['only-masked-padding']),
    };
    const { request, adapters } = await prepareRequest(model, { ...params, initImage, mask }, await folderAdapterSource(config.lorasDir, config.embeddingsDir));
    // AUTOMATIC1111's "Model hash", read while the engine runs (a UNet is GBs).
    const modelHash = sha256File(model.paths.unet).then(
      (sha256) => sha256.slice(0, 10),
      () => undefined,
    );
    for (const warning of adapters.warnings) process.stderr.write(`warning: ${warning}\n`);
    const bar = new ProgressBar(process.stderr, (step, totalSteps, rate) => `${step}/${totalSteps} steps  ${rate.toFixed(2)} it/s  ETA ${((totalSteps - step) / rate).toFixed(0)} s`);
    process.stderr.write(`${model.id}: ${request.width}x${request.height}, ${request.scheduler}, ${request.steps} steps, seed ${request.seed}\n`);
    const result = await engine.run(model, request, { signal: controller.signal, onStep: (p) => bar.update(p.step, p.totalSteps) });
    bar.done();
    for (const warning of result.warnings) process.stderr.write(`warning: ${warning}\n`);
    // The server's metadata: its infotext, and in a PNG its "sdql" chunk, without a generation id.
    const infotext = {
      ...request,
      ...(await infotextAdapters(request, 0)),
      schedulerConfig: model.schedulerConfig,
      modelHash: await modelHash,
      modelName: model.id,
      extra: request.inpaint && inpaintInfotext(request.inpaint),
    };
    const sha256 = (bytes: Buffer | undefined) => bytes && { sha256: createHash('sha256').update(bytes).digest('hex') };
    const sent = { ...params, modelId: model.id, promptSyntax: request.promptSyntax, scheduleType: request.scheduleType, clipSkip: request.clipSkip, initImage: sha256(initImage), mask: sha256(mask) };
    for (const [i, { seed, image }] of result.images.entries()) {
      const file = result.images.length === 1 ? values.output : values.output.replace(/(\.\w+)$/, `-${i}$1`);
      const parameters = formatInfotext({ ...infotext, seed });
      writeFileSync(file, await encodeImageWithInfo(image, format, { parameters, sdql: JSON.stringify({ ...sent, seed, model: model.id }) }));
      process.stderr.write(`wrote ${file} (seed ${seed})\n`);
    }
    process.stderr.write(`done in ${(result.timings.totalMs / 1000).toFixed(1)} s\n`);
    return 0;
  } catch (error) {
    if (error instanceof DiffusionError) {
      process.stderr.write(`\n${error.code === 'ABORTED' ? 'canceled' : `error: ${error.message}`}\n`);
      return error.code === 'ABORTED' ? 130 : 1;
    }
    throw error;
  } finally {
    process.off('SIGINT', onSigint);
    await engine.close();
  }
}

/** The file an image flag names; BAD_USER_INPUT (a message, no stack) when it cannot be read. */
function readInput(flag: string, path: string | undefined): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (error) {
    throw new DiffusionError('BAD_USER_INPUT', `cannot read --${flag} ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

/** A model folder given as a path, or as the id of a folder in SDQL_MODELS_DIR. */
function resolveModelDir(model: string, modelsDir: string): string {
  if (existsSync(join(model, 'model_index.json'))) return resolve(model);
  const byId = join(modelsDir, model);
  if (existsSync(join(byId, 'model_index.json'))) return byId;
  throw new DiffusionError('BAD_USER_INPUT', `no model "${model}": give a folder with a model_index.json or the id of one in ${modelsDir}`);
}
