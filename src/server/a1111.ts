// AUTOMATIC1111's REST API at /sdapi/v1/, as its v1.10.1 modules/api/api.py and models.py define it,
// for the clients written against it (Photoshop and Krita plugins, bots, scripts). Each request is
// translated into sdql's own GraphQL operations and run through the same schema (yoga.fetch), so
// validation, the queue, the history and whatever guards the GraphQL endpoint are one path.
import type { IncomingMessage, ServerResponse } from 'node:http';
import sharp from 'sharp';
import type { Services } from '../graphql/context.ts';
import { localId } from '../graphql/ids.ts';
import { A1111_SAMPLERS, BUILTIN_UPSCALERS, schedulerFromA1111 } from '../graphql/scheduler.ts';
import { log } from '../log.ts';
import { GRAPHQL_PATH, type Yoga } from './graphql.ts';
import { sendJson, type Route } from './http.ts';
import { MAX_REQUEST_BYTES } from './limits.ts';

export const A1111_PATH = '/sdapi/v1/';

/** A refusal in FastAPI's validation error shape, which AUTOMATIC1111's clients show. */
class Unprocessable extends Error {
  constructor(
    readonly field: string,
    message: string,
    readonly status = 422,
  ) {
    super(message);
  }
}

const detail = (error: Unprocessable) => ({ detail: [{ loc: ['body', error.field], msg: error.message, type: 'value_error' }] });

interface GraphQLResult {
  data?: unknown;
  errors?: { message: string; extensions?: { code?: string } }[];
}

/** The codes of errors a client can fix: AUTOMATIC1111 answers those 422. */
const CLIENT_CODES = new Set(['BAD_USER_INPUT', 'NOT_FOUND', 'MODEL_INVALID']);

type Body = Record<string, unknown>;

interface ModelRow {
  id: string;
  name: string;
  supported: boolean;
  sha256: string | null;
  shortHash: string | null;
}

interface GenerationRow {
  status: string;
  error: string | null;
  prompt: string;
  negativePrompt: string;
  seed: number;
  width: number;
  height: number;
  steps: number;
  guidanceScale: number;
  scheduler: keyof typeof A1111_SAMPLERS;
  strength: number | null;
  numImages: number;
  modelHash: string | null;
  warnings: string[];
  model: { name: string };
}

/** The model the last POST /options chose; null: the first supported one. */
interface State {
  checkpoint: string | null;
  /** The REST generation running now, with its latest progress event. */
  current: { id: string; step: number; totalSteps: number | null; etaMs: number | null; preview: string | null; startedAt: number } | null;
}

const HTTP_STATUS: Record<string, number> = { UNAUTHENTICATED: 401, FORBIDDEN: 403, QUOTA_EXCEEDED: 429 };

/**
 * AUTOMATIC1111's `--api-auth` clients send HTTP Basic; sdql takes the token as its password (any
 * user name) and passes it on as the Bearer token GraphQL reads.
 */
function bearerOf(authorization: string | undefined): string | undefined {
  const basic = authorization?.match(/^Basic\s+(\S+)$/i);
  if (!basic) return authorization;
  const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
  return `Bearer ${decoded.slice(decoded.indexOf(':') + 1)}`;
}

export function a1111Routes(services: Services, yoga: Yoga): Route[] {
  const state: State = { checkpoint: null, current: null };

  const graphql = async <T,>(req: IncomingMessage, query: string, variables: Record<string, unknown> = {}): Promise<T> => {
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    // The caller's credentials go with it, so that the GraphQL endpoint's rules apply alike.
    const authorization = bearerOf(req.headers.authorization);
    if (authorization) headers.authorization = authorization;
    const response = await yoga.fetch(`http://localhost${GRAPHQL_PATH}`, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
    const result = (await response.json()) as GraphQLResult;
    const error = result.errors?.[0];
    if (error) {
      const code = error.extensions?.code ?? '';
      throw new Unprocessable('', error.message, CLIENT_CODES.has(code) ? 422 : (HTTP_STATUS[code] ?? 500));
    }
    return result.data as T;
  };

  const models = async (req: IncomingMessage) =>
    (await graphql<{ models: ModelRow[] }>(req, '{ models { id name supported sha256 shortHash } }')).models;

  /** The model a request names (AUTOMATIC1111's title "name [hash]", or its name), else the chosen or first one. */
  const chooseModel = async (req: IncomingMessage, checkpoint: unknown) => {
    const list = await models(req);
    const wanted = typeof checkpoint === 'string' ? checkpoint : state.checkpoint;
    if (wanted === null) {
      const first = list.find((m) => m.supported);
      if (!first) throw new Unprocessable('sd_model_checkpoint', 'no supported model is installed');
      return first;
    }
    const found = list.find((m) => wanted === m.name || wanted === title(m) || wanted.replace(/\s*\[\w+\]$/, '') === m.name);
    if (!found) throw new Unprocessable('sd_model_checkpoint', `no model is named "${wanted}"; GET /sdapi/v1/sd-models lists them`);
    return found;
  };

  const generate = async (req: IncomingMessage, res: ServerResponse, body: Body, img2img: boolean) => {
    const warnings = refused(body, img2img);
    const overrides = (body.override_settings ?? {}) as Body;
    const model = await chooseModel(req, overrides.sd_model_checkpoint);
    const input: Body = { modelId: model.id, prompt: str(body, 'prompt') ?? '', ...common(body), ...(img2img ? img2imgInput(body) : hiresInput(body)) };
    const { generate } = await graphql<{ generate: { id: string } }>(req, 'mutation ($input: GenerateInput!) { generate(input: $input) { id } }', { input });
    const id = localId('Generation', generate.id);
    await follow(id);
    const { generation } = await graphql<{ generation: GenerationRow }>(
      req,
      `query ($id: ID!) { generation(id: $id) { status error prompt negativePrompt seed width height steps guidanceScale scheduler strength numImages modelHash warnings model { name } } }`,
      { id: generate.id },
    );
    if (generation.status === 'FAILED') throw new Unprocessable('', generation.error ?? 'the generation failed', 500);
    const images = await services.db.prisma.image.findMany({ where: { generationId: id }, orderBy: { index: 'asc' } });
    const encoded = await Promise.all(images.map(async (image) => Buffer.from(await services.jobs.images.read(image.path)).toString('base64')));
    const seeds = images.length ? images.map((i) => Number(i.seed)) : [Number(generation.seed)];
    const info = {
      prompt: generation.prompt,
      all_prompts: seeds.map(() => generation.prompt),
      negative_prompt: generation.negativePrompt,
      all_negative_prompts: seeds.map(() => generation.negativePrompt),
      seed: Number(generation.seed),
      all_seeds: seeds,
      subseed: input.variationSeed ?? -1,
      all_subseeds: seeds.map((_, i) => (typeof input.variationSeed === 'number' ? input.variationSeed + i : -1)),
      subseed_strength: input.variationStrength ?? 0,
      enable_hr: input.hires !== undefined,
      width: generation.width,
      height: generation.height,
      sampler_name: A1111_SAMPLERS[generation.scheduler],
      cfg_scale: generation.guidanceScale,
      steps: generation.steps,
      batch_size: generation.numImages,
      denoising_strength: generation.strength,
      sd_model_name: generation.model.name,
      sd_model_hash: generation.modelHash,
      infotexts: images.map((i) => i.infotext ?? ''),
      job_timestamp: new Date().toISOString(),
      // What sdql made of the request that AUTOMATIC1111 would have done otherwise.
      sdql_generation_id: generate.id,
      sdql_status: generation.status,
      sdql_warnings: [...warnings, ...generation.warnings],
    };
    sendJson(res, 200, { images: encoded, parameters: body, info: JSON.stringify(info) });
  };

  /** Waits for the generation to end, keeping its latest progress for GET /progress. */
  const follow = async (id: string) => {
    state.current = { id, step: 0, totalSteps: null, etaMs: null, preview: null, startedAt: Date.now() };
    try {
      for await (const event of services.jobs.progress(id)) {
        if (state.current?.id !== id) continue;
        state.current = { ...state.current, step: event.step, totalSteps: event.totalSteps, etaMs: event.etaMs, preview: event.preview?.dataUrl ?? state.current.preview };
      }
    } finally {
      if (state.current?.id === id) state.current = null;
    }
  };

  const progress = async (_req: IncomingMessage, res: ServerResponse, url: URL) => {
    const current = state.current;
    const fraction = current?.totalSteps ? current.step / current.totalSteps : 0;
    const skipImage = url.searchParams.get('skip_current_image') === 'true';
    const preview = current?.preview && !skipImage ? (await sharp(Buffer.from(current.preview.slice(current.preview.indexOf(',') + 1), 'base64')).png().toBuffer()).toString('base64') : null;
    sendJson(res, 200, {
      progress: fraction,
      eta_relative: current?.etaMs != null ? current.etaMs / 1000 : 0,
      state: {
        skipped: false,
        interrupted: false,
        stopping_generation: false,
        job: current ? current.id : '',
        job_count: current ? 1 : 0,
        job_timestamp: current ? new Date(current.startedAt).toISOString() : '0',
        job_no: 0,
        sampling_step: current?.step ?? 0,
        sampling_steps: current?.totalSteps ?? 0,
      },
      current_image: preview,
      textinfo: null,
    });
  };

  /** Cancels the REST generation running now, else every running one (AUTOMATIC1111 has one at a time). */
  const interrupt = async (req: IncomingMessage, res: ServerResponse) => {
    const ids = state.current ? [state.current.id] : (await graphql<{ queue: { running: { id: string }[] } }>(req, '{ queue { running { id } } }')).queue.running.map((g) => g.id);
    for (const id of ids) {
      await graphql(req, 'mutation ($id: ID!) { cancelGeneration(id: $id) { id } }', { id }).catch((error: unknown) => log.debug('interrupt: nothing to cancel', { err: error }));
    }
    sendJson(res, 200, {});
  };

  const options = async (req: IncomingMessage, res: ServerResponse) => {
    const model = await chooseModel(req, undefined).catch(() => null);
    sendJson(res, 200, { sd_model_checkpoint: model ? title(model) : null, sd_checkpoint_hash: model?.sha256 ?? null, CLIP_stop_at_last_layers: 1, samples_format: 'png' });
  };

  const setOptions = async (req: IncomingMessage, res: ServerResponse, body: Body) => {
    const unknown = Object.keys(body).filter((key) => key !== 'sd_model_checkpoint');
    if (unknown.length) log.warn('AUTOMATIC1111 options ignored: sdql has no such settings', { options: unknown });
    if (body.sd_model_checkpoint !== undefined) state.checkpoint = (await chooseModel(req, body.sd_model_checkpoint)).name;
    sendJson(res, 200, null);
  };

  const sdModels = async (req: IncomingMessage, res: ServerResponse) => {
    const list = (await models(req)).filter((m) => m.supported);
    sendJson(res, 200, list.map((m) => ({ title: title(m), model_name: m.name, hash: m.shortHash, sha256: m.sha256, filename: m.name, config: null })));
  };

  const samplers = (_req: IncomingMessage, res: ServerResponse) => {
    // DPM++ 2M with and without Karras is one AUTOMATIC1111 sampler, with a schedule type.
    const names = [...new Set(Object.values(A1111_SAMPLERS))];
    sendJson(res, 200, names.map((name) => ({ name, aliases: [], options: {} })));
  };

  /** AUTOMATIC1111's PNG Info: the infotext as written (`info`), its keys (`parameters`), and the image's other texts (`items`). */
  const pngInfo = async (req: IncomingMessage, res: ServerResponse, body: Body) => {
    const image = str(body, 'image');
    if (!image) throw new Unprocessable('image', 'image must be a base64 PNG, JPEG or WebP');
    const { pngInfo } = await graphql<{ pngInfo: { parameters: string | null; prompt: string | null; negativePrompt: string | null; settings: { key: string; value: string }[]; request: string | null } }>(
      req,
      'query ($image: ImageInput!) { pngInfo(image: $image) { parameters prompt negativePrompt settings { key value } request } }',
      { image: { dataUrl: dataUrl(image) } },
    );
    const parameters: Record<string, string> = pngInfo.parameters === null ? {} : { Prompt: pngInfo.prompt ?? '', 'Negative prompt': pngInfo.negativePrompt ?? '' };
    for (const { key, value } of pngInfo.settings) parameters[key] = value;
    sendJson(res, 200, { info: pngInfo.parameters ?? '', items: pngInfo.request ? { sdql: pngInfo.request } : {}, parameters });
  };

  const loras = async (req: IncomingMessage, res: ServerResponse) => {
    const { loras } = await graphql<{ loras: { name: string; tagName: string; error: string | null }[] }>(req, '{ loras { name tagName error } }');
    sendJson(res, 200, loras.filter((l) => !l.error).map((l) => ({ name: l.tagName, alias: l.tagName, path: l.name, metadata: {} })));
  };

  const embeddings = async (req: IncomingMessage, res: ServerResponse) => {
    const { embeddings } = await graphql<{ embeddings: { name: string; vectors: number | null; dim: number | null; error: string | null }[] }>(req, '{ embeddings { name vectors dim error } }');
    const entry = (e: (typeof embeddings)[number]) => [e.name, { step: null, sd_checkpoint: null, sd_checkpoint_name: null, shape: e.dim, vectors: e.vectors }];
    sendJson(res, 200, { loaded: Object.fromEntries(embeddings.filter((e) => !e.error).map(entry)), skipped: Object.fromEntries(embeddings.filter((e) => e.error).map(entry)) });
  };

  const refreshCheckpoints = async (req: IncomingMessage, res: ServerResponse) => {
    await graphql(req, 'mutation { rescanModels { scannedAt } }');
    sendJson(res, 200, null);
  };

  const json = (method: Route['method'], name: string, handle: (req: IncomingMessage, res: ServerResponse, body: Body, url: URL) => unknown): Route => ({
    method,
    path: `${A1111_PATH}${name}`,
    handle: async (req, res, url) => {
      try {
        const body = method === 'POST' ? await readJson(req) : {};
        await handle(req, res, body, url);
      } catch (error) {
        if (!(error instanceof Unprocessable)) throw error;
        if (error.status === 422) return sendJson(res, 422, detail(error));
        sendJson(res, error.status, { error: error.status === 500 ? 'Internal Server Error' : 'Forbidden', detail: error.message });
      }
    },
  });

  return [
    json('POST', 'txt2img', (req, res, body) => generate(req, res, body, false)),
    json('POST', 'img2img', (req, res, body) => generate(req, res, body, true)),
    json('GET', 'progress', (req, res, _body, url) => progress(req, res, url)),
    json('POST', 'interrupt', (req, res) => interrupt(req, res)),
    // sdql runs a batch as one: skipping the image being made stops the request, as interrupt does.
    json('POST', 'skip', (req, res) => interrupt(req, res)),
    json('GET', 'options', (req, res) => options(req, res)),
    json('POST', 'options', (req, res, body) => setOptions(req, res, body)),
    json('GET', 'sd-models', (req, res) => sdModels(req, res)),
    json('GET', 'samplers', (req, res) => samplers(req, res)),
    json('GET', 'loras', (req, res) => loras(req, res)),
    json('GET', 'embeddings', (req, res) => embeddings(req, res)),
    json('POST', 'png-info', (req, res, body) => pngInfo(req, res, body)),
    json('POST', 'refresh-checkpoints', (req, res) => refreshCheckpoints(req, res)),
  ];
}

const title = (m: { name: string; shortHash: string | null }) => (m.shortHash ? `${m.name} [${m.shortHash}]` : m.name);

/** The JSON body; 415 for anything but application/json, which no cross-site form can send without a preflight. */
async function readJson(req: IncomingMessage): Promise<Body> {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/json') throw new Unprocessable('', `send the request as application/json (got "${type || 'no content type'}")`, 415);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_REQUEST_BYTES) throw new Unprocessable('', `the request body is over ${MAX_REQUEST_BYTES} bytes`, 413);
    chunks.push(chunk as Buffer);
  }
  try {
    const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Error('not an object');
    return body as Body;
  } catch {
    throw new Unprocessable('', 'the body must be a JSON object');
  }
}

function str(body: Body, field: string): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new Unprocessable(field, `${field} must be a string`);
  return value;
}

function num(body: Body, field: string): number | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new Unprocessable(field, `${field} must be a number`);
  return value;
}

/** The parameters txt2img and img2img share, as GenerateInput fields; absent ones take sdql's defaults. */
function common(body: Body): Body {
  const sampler = str(body, 'sampler_name') ?? str(body, 'sampler_index');
  const scheduleType = str(body, 'scheduler');
  const selected = sampler === undefined ? undefined : schedulerFromA1111(sampler, scheduleType);
  if (sampler !== undefined && selected === undefined) {
    throw new Unprocessable('sampler_name', `sdql has no sampler "${sampler}"${scheduleType ? ` with schedule type "${scheduleType}"` : ''}; GET /sdapi/v1/samplers lists them`);
  }
  const seed = num(body, 'seed');
  const subseed = num(body, 'subseed');
  const subseedStrength = num(body, 'subseed_strength');
  const batch = (num(body, 'batch_size') ?? 1) * (num(body, 'n_iter') ?? 1);
  return {
    negativePrompt: str(body, 'negative_prompt'),
    scheduler: selected?.scheduler,
    scheduleType: selected?.scheduleType,
    // -1 is AUTOMATIC1111's "random".
    seed: seed === -1 ? undefined : seed,
    variationSeed: subseed === -1 || !subseedStrength ? undefined : subseed,
    variationStrength: subseedStrength || undefined,
    numImages: batch,
    steps: num(body, 'steps'),
    guidanceScale: num(body, 'cfg_scale'),
    width: num(body, 'width'),
    height: num(body, 'height'),
    eta: num(body, 'eta'),
    clipSkip: num((body.override_settings ?? {}) as Body, 'CLIP_stop_at_last_layers'),
  };
}

/** txt2img's hires fix, when `enable_hr`; the size asked for (`hr_resize_x`/`_y`) wins over `hr_scale`, as in AUTOMATIC1111. */
function hiresInput(body: Body): Body {
  if (body.enable_hr !== true) return {};
  const name = str(body, 'hr_upscaler');
  const builtin = Object.entries(BUILTIN_UPSCALERS).find(([, u]) => u.a1111.toLowerCase() === name?.toLowerCase())?.[0];
  const width = num(body, 'hr_resize_x') || undefined;
  const height = num(body, 'hr_resize_y') || undefined;
  return {
    hires: {
      scale: width || height ? undefined : (num(body, 'hr_scale') ?? 2),
      width,
      height,
      // A name that is not built in is an id of `upscalers`; an unknown one is refused there.
      upscaler: builtin ?? name,
      steps: num(body, 'hr_second_pass_steps') || undefined,
      strength: num(body, 'denoising_strength'),
    },
  };
}

const INPAINT_FILLS = ['FILL', 'ORIGINAL', 'LATENT_NOISE', 'LATENT_NOTHING'];

function img2imgInput(body: Body): Body {
  const images = body.init_images;
  if (!Array.isArray(images) || images.length === 0 || typeof images[0] !== 'string') throw new Unprocessable('init_images', 'init_images must hold one base64 image');
  if (images.length > 1) throw new Unprocessable('init_images', 'sdql takes one init image per request');
  const mask = str(body, 'mask');
  const fill = num(body, 'inpainting_fill');
  if (fill !== undefined && !INPAINT_FILLS[fill]) throw new Unprocessable('inpainting_fill', 'inpainting_fill must be 0 (fill), 1 (original), 2 (latent noise) or 3 (latent nothing)');
  const fullRes = body.inpaint_full_res;
  const invert = num(body, 'inpainting_mask_invert');
  return {
    initImage: { dataUrl: dataUrl(images[0]) },
    strength: num(body, 'denoising_strength') ?? 0.75,
    ...(mask
      ? {
          mask: { dataUrl: dataUrl(mask) },
          maskBlur: num(body, 'mask_blur'),
          inpaintFill: INPAINT_FILLS[fill ?? 1],
          // AUTOMATIC1111's API defaults to "Only masked".
          inpaintArea: fullRes === false || fullRes === 0 ? 'WHOLE_PICTURE' : 'ONLY_MASKED',
          onlyMaskedPadding: num(body, 'inpaint_full_res_padding') ?? 0,
          invertMask: invert === undefined ? undefined : invert === 1,
        }
      : {}),
  };
}

/** AUTOMATIC1111 clients send bare base64 or a data URL; the image's own bytes say its format. */
const dataUrl = (image: string) => (image.startsWith('data:') ? image : `data:image/png;base64,${image}`);

/**
 * Parameters sdql cannot honour: refused when they would change the image (never silently wrong),
 * ignored with a warning when they only concern AUTOMATIC1111's UI or extensions.
 */
function refused(body: Body, img2img: boolean): string[] {
  const refuse = (field: string, why: string) => {
    throw new Unprocessable(field, `${field} is not supported by sdql: ${why}`);
  };
  if (img2img && body.enable_hr === true) refuse('enable_hr', 'hires fix is for txt2img');
  if (body.tiling === true) refuse('tiling', 'tiling is not available');
  if (body.restore_faces === true) refuse('restore_faces', 'face restoration is not available');
  if (body.script_name) refuse('script_name', 'scripts are not available');
  if (img2img && (num(body, 'resize_mode') ?? 0) !== 0) refuse('resize_mode', 'only 0 (just resize) is available');
  const warnings: string[] = [];
  if (body.alwayson_scripts && Object.keys(body.alwayson_scripts).length) warnings.push(`alwayson_scripts ignored: ${Object.keys(body.alwayson_scripts).join(', ')}`);
  if (Array.isArray(body.styles) && body.styles.length) warnings.push('styles ignored: sdql has no styles');
  for (const warning of warnings) log.warn(`AUTOMATIC1111 API: ${warning}`);
  return warnings;
}
