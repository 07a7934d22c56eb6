// Pulling a model from the Hugging Face Hub into SDQL_MODELS_DIR, with @huggingface/hub (no Python):
// a diffusers/Optimum ONNX pipeline, or one single-file checkpoint. Files land in a hidden
// `.partial-<name>/` folder (the scan skips dot folders), each checked against the Hub's own ids, and
// the model is renamed into place only once all of them are complete.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { downloadFile, HubApiError, listFiles, type ListFileEntry } from '@huggingface/hub';

export const DEFAULT_HUB_URL = 'https://huggingface.co';

export type PullErrorCode =
  /** The request itself is wrong (repo id, name, path); nothing was fetched. */
  | 'BAD_USER_INPUT'
  /** No such repository, revision or file on the Hub. */
  | 'NOT_FOUND'
  /** The Hub wants a token (private or gated repository), or refused the one given. */
  | 'UNAUTHORIZED'
  /** The repository holds nothing sdql can run. */
  | 'NO_MODEL'
  /** A downloaded file is not what the Hub lists: deleted, with everything else of the pull. */
  | 'CHECKSUM_MISMATCH'
  /** The network or the Hub failed; what was downloaded is kept for the next try to resume. */
  | 'DOWNLOAD_FAILED';

export class PullError extends Error {
  constructor(
    readonly code: PullErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'PullError';
  }
}

export interface PullRequest {
  /** `owner/name` on the Hub. */
  repo: string;
  /** Branch, tag or commit (default `main`). */
  revision?: string;
  /** Where the pipeline sits inside the repository. */
  subfolder?: string;
  /** One `.safetensors` checkpoint of the repository (inside `subfolder`, when given). */
  file?: string;
  /** The model's id in SDQL_MODELS_DIR. */
  name?: string;
}

/** A request checked without the network: every field known and safe to use in a URL and a path. */
export interface CheckedPull {
  repo: string;
  revision: string;
  subfolder: string;
  file: string | undefined;
  name: string;
}

export interface HubAccess {
  hubUrl: string;
  /** HF_TOKEN, for private and gated repositories. */
  accessToken?: string;
}

export interface PullFile {
  /** Path in the repository. */
  path: string;
  /** Path in the model folder (or, for a checkpoint, in SDQL_MODELS_DIR). */
  local: string;
  size: number;
  /** SHA-256 of an LFS file (its LFS oid), else the git blob id (SHA-1 of `blob <size>\0` + content). */
  hash: { algorithm: 'sha256' | 'git-blob'; hex: string };
}

export interface PullPlan extends CheckedPull {
  kind: 'ONNX' | 'CHECKPOINT';
  files: PullFile[];
  totalBytes: number;
  /** Repository files left behind, and why. */
  skipped: { path: string; why: string }[];
}

export interface PullProgress {
  /** The file being downloaded (repository path). */
  file: string;
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

// The Hub's own rules for repository names (huggingface_hub's validate_repo_id).
const REPO_ID = /^(?:[A-Za-z0-9][\w.-]*\/)?[A-Za-z0-9][\w.-]*$/;
const REVISION = /^[\w.][\w./-]*$/;
const REPO_PATH = /^[\w.-]+(?:\/[\w.-]+)*$/;
const MODEL_NAME = /^[A-Za-z0-9][\w.-]*$/;

/** SDQL_MODELS_DIR's own folders (LoRAs, embeddings, upscalers and VAEs by default), never models. */
const RESERVED = new Set(['loras', 'embeddings', 'upscalers', 'vae']);
/** The folders of an ONNX pipeline that sdql reads (SDXL's second encoder too). */
const PIPELINE_PARTS = new Set(['text_encoder', 'text_encoder_2', 'unet', 'vae_decoder', 'vae_encoder', 'tokenizer', 'tokenizer_2', 'scheduler']);
/** Weights for other runtimes: a diffusers repository often holds PyTorch/Flax/TF copies beside the ONNX export. */
const OTHER_WEIGHTS = /\.(?:bin|safetensors|ckpt|pt|pth|msgpack|h5|ot)$/i;

function bad(message: string): PullError {
  return new PullError('BAD_USER_INPUT', message);
}

function checkPath(what: string, path: string | undefined): string {
  const trimmed = (path ?? '').replace(/^\/+|\/+$/g, '');
  if (trimmed && (!REPO_PATH.test(trimmed) || trimmed.split('/').some((s) => s === '.' || s === '..'))) {
    throw bad(`${what} "${path}" is not a path inside a repository (letters, digits, "_", "-", "." and "/")`);
  }
  return trimmed;
}

/** Checks a request before anything is fetched; the name must be free in `modelsDir`. */
export function checkPullRequest(request: PullRequest, modelsDir: string): CheckedPull {
  const repo = request.repo.trim();
  if (!REPO_ID.test(repo) || repo.includes('--') || repo.includes('..') || repo.length > 96) {
    throw bad(`"${request.repo}" is not a Hugging Face repository id: write owner/name, e.g. onnx-community/stable-diffusion-v1-5-ONNX`);
  }
  const revision = request.revision?.trim() || 'main';
  if (!REVISION.test(revision) || revision.includes('..')) throw bad(`"${request.revision}" is not a branch, tag or commit name`);
  const subfolder = checkPath('subfolder', request.subfolder);
  const file = checkPath('file', request.file) || undefined;
  if (file && !file.toLowerCase().endsWith('.safetensors')) {
    throw bad(`file "${file}" is not a .safetensors checkpoint (sdql does not load pickled .ckpt files: they can run code)`);
  }
  const fallback = file ? basename(file).replace(/\.safetensors$/i, '') : basename(subfolder || repo);
  const name = request.name?.trim() || fallback;
  if (!MODEL_NAME.test(name) || name.length > 100) {
    throw bad(`"${name}" cannot name a model: use letters, digits, "_", "-" and "." (not first), at most 100${request.name ? '' : '; give one with --name (pullModel: name)'}`);
  }
  if (RESERVED.has(name.toLowerCase())) throw bad(`"${name}" is the name of a folder sdql reads inside SDQL_MODELS_DIR: choose another name`);
  const taken = [name, `${name}.safetensors`].find((entry) => existsSync(join(modelsDir, entry)));
  if (taken) throw bad(`a model named "${name}" is in ${modelsDir} already (${taken}): choose another name or remove it`);
  return { repo, revision, subfolder, file, name };
}

/** The Hub's refusals, in words that say what to do. */
function hubError(error: unknown, pull: CheckedPull, access: HubAccess): PullError {
  const where = `${pull.repo}${pull.revision === 'main' ? '' : ` at revision "${pull.revision}"`}`;
  if (error instanceof HubApiError) {
    if (error.statusCode === 404) return new PullError('NOT_FOUND', `the Hub has no ${where} (${error.message.split('.')[0]}): check the repository id and revision`);
    if (error.statusCode === 401) {
      return new PullError(
        'UNAUTHORIZED',
        access.accessToken
          ? `the Hub refused HF_TOKEN for ${where}: the token is invalid or expired, or the repository does not exist`
          : `the Hub refused ${where} without a token: it does not exist, or it is private or gated; set HF_TOKEN to a token that may read it`,
      );
    }
    if (error.statusCode === 403) {
      return new PullError('UNAUTHORIZED', `the Hub refused HF_TOKEN access to ${where}: for a gated repository accept its conditions on its page, and give the token read access`);
    }
    return new PullError('DOWNLOAD_FAILED', `the Hub answered ${error.statusCode} for ${where}: ${error.message}`);
  }
  const cause = (error as { cause?: { message?: string } }).cause?.message;
  return new PullError('DOWNLOAD_FAILED', `cannot reach the Hub at ${access.hubUrl}: ${cause ?? (error as Error).message}`);
}

function pullFile(entry: ListFileEntry, local: string): PullFile {
  const hash = entry.lfs ? { algorithm: 'sha256' as const, hex: entry.lfs.oid } : { algorithm: 'git-blob' as const, hex: entry.oid ?? '' };
  return { path: entry.path, local, size: entry.lfs?.size ?? entry.size, hash };
}

/** Lists the repository and chooses the files to pull: an ONNX pipeline, or one checkpoint (with its yaml). */
export async function planPull(pull: CheckedPull, access: HubAccess): Promise<PullPlan> {
  const entries: ListFileEntry[] = [];
  try {
    for await (const entry of listFiles({ repo: pull.repo, revision: pull.revision, path: pull.subfolder || undefined, recursive: true, hubUrl: access.hubUrl, accessToken: access.accessToken })) {
      if (entry.type === 'file') entries.push(entry);
    }
  } catch (error) {
    throw hubError(error, pull, access);
  }
  const prefix = pull.subfolder ? `${pull.subfolder}/` : '';
  const byPath = new Map(entries.map((e) => [e.path.slice(prefix.length), e]));
  const where = `${pull.repo}${pull.subfolder ? `/${pull.subfolder}` : ''} (revision ${pull.revision})`;
  const plan = (kind: PullPlan['kind'], files: PullFile[], skipped: PullPlan['skipped']): PullPlan => ({
    ...pull,
    kind,
    files,
    totalBytes: files.reduce((sum, f) => sum + f.size, 0),
    skipped,
  });
  const checkpoint = (rel: string) => {
    const yaml = byPath.get(rel.replace(/\.safetensors$/i, '.yaml'));
    // The yaml first: the checkpoint is what the registry looks for, and its config must be there with it.
    return plan('CHECKPOINT', [...(yaml ? [pullFile(yaml, `${pull.name}.yaml`)] : []), pullFile(byPath.get(rel)!, `${pull.name}.safetensors`)], []);
  };

  if (pull.file) {
    if (!byPath.has(pull.file)) throw new PullError('NOT_FOUND', `${where} has no file "${pull.file}"`);
    return checkpoint(pull.file);
  }
  if (byPath.has('model_index.json') && byPath.has('unet/model.onnx')) {
    const files: PullFile[] = [];
    const skipped: PullPlan['skipped'] = [];
    for (const [rel, entry] of byPath) {
      const part = rel.split('/')[0];
      if (rel === 'model_index.json') continue;
      if (!rel.includes('/') || !PIPELINE_PARTS.has(part)) skipped.push({ path: entry.path, why: 'not part of the pipeline sdql runs' });
      else if (OTHER_WEIGHTS.test(rel)) skipped.push({ path: entry.path, why: 'weights for PyTorch/Flax/TensorFlow; sdql runs the ONNX files' });
      else files.push(pullFile(entry, rel));
    }
    // model_index.json last: a folder that has it is a model.
    files.push(pullFile(byPath.get('model_index.json')!, 'model_index.json'));
    return plan('ONNX', files, skipped);
  }
  const checkpoints = [...byPath.keys()].filter((rel) => !rel.includes('/') && rel.toLowerCase().endsWith('.safetensors'));
  if (checkpoints.length === 1) return checkpoint(checkpoints[0]);
  if (checkpoints.length > 1) {
    throw new PullError('NO_MODEL', `${where} holds several checkpoints (${checkpoints.join(', ')}): choose one with --file (pullModel: file)`);
  }
  const hint = byPath.has('model_index.json')
    ? 'it is a diffusers pipeline without ONNX files (PyTorch weights): look for an ONNX export of it, or an `onnx` branch (revision)'
    : 'it has neither a diffusers/Optimum ONNX pipeline (model_index.json and unet/model.onnx) nor a .safetensors checkpoint at its top; give --subfolder or --file (pullModel: subfolder, file)';
  throw new PullError('NO_MODEL', `${where} holds no model sdql can use: ${hint}`);
}

/** What the pull keeps beside its files so that a resumed pull trusts only what it verified. */
interface Manifest {
  repo: string;
  /** local path → the hash it was verified against, or is being downloaded for. */
  verified: Record<string, string>;
  incomplete: Record<string, string>;
}

const MANIFEST = '.sdql-pull.json';

export function partialDir(modelsDir: string, name: string): string {
  return join(modelsDir, `.partial-${name}`);
}

function newHash(file: PullFile): Hash {
  const hash = createHash(file.hash.algorithm === 'sha256' ? 'sha256' : 'sha1');
  if (file.hash.algorithm === 'git-blob') hash.update(`blob ${file.size}\0`);
  return hash;
}

/**
 * Downloads the plan's files into `.partial-<name>/` (resuming what an earlier try left there), checks
 * each, and moves the model into SDQL_MODELS_DIR. Returns the path of the model (folder or file).
 */
export async function runPull(plan: PullPlan, modelsDir: string, access: HubAccess, options: { signal?: AbortSignal; onProgress?: (p: PullProgress) => void } = {}): Promise<string> {
  const partial = partialDir(modelsDir, plan.name);
  await mkdir(partial, { recursive: true });
  const manifestPath = join(partial, MANIFEST);
  const stored = await readFile(manifestPath, 'utf8').then((text) => JSON.parse(text) as Manifest, () => undefined);
  const manifest: Manifest = stored?.repo === plan.repo ? stored : { repo: plan.repo, verified: {}, incomplete: {} };
  const save = () => writeFile(manifestPath, JSON.stringify(manifest));

  const progress: PullProgress = { file: '', filesDone: 0, filesTotal: plan.files.length, bytesDone: 0, bytesTotal: plan.totalBytes };
  for (const file of plan.files) {
    const dest = join(partial, file.local);
    progress.file = file.path;
    if (manifest.verified[file.local] === file.hash.hex && (await stat(dest).then((s) => s.size === file.size, () => false))) {
      progress.bytesDone += file.size;
      progress.filesDone++;
      continue;
    }
    await mkdir(dirname(dest), { recursive: true });
    const incomplete = `${dest}.incomplete`;
    // Resume only a download of the same content (the Hub's id), and only LFS files: the rest are small.
    const have = manifest.incomplete[file.local] === file.hash.hex && file.hash.algorithm === 'sha256' ? await stat(incomplete).then((s) => s.size, () => 0) : 0;
    const start = have <= file.size ? have : 0;
    manifest.incomplete[file.local] = file.hash.hex;
    await save();
    const hash = newHash(file);
    if (start > 0) {
      for await (const chunk of createReadStream(incomplete, { end: start - 1, highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
    }
    let written = start;
    const base = progress.bytesDone;
    progress.bytesDone += start;
    options.onProgress?.({ ...progress });
    // A download that got all its bytes before it stopped needs only its check.
    if (start < file.size) {
      try {
        // xet: false keeps to the resolve URL, which the Hub redirects to its CDN for every file
        // (Xet-stored ones too) with Range support: one download path, the one the tests run.
        const blob = await downloadFile({ repo: plan.repo, revision: plan.revision, path: file.path, hubUrl: access.hubUrl, accessToken: access.accessToken, xet: false });
        if (!blob) throw new PullError('NOT_FOUND', `${plan.repo} (revision ${plan.revision}) no longer has ${file.path}: run the pull again`);
        // The library's Blob fetches a slice with a Range request (over the Hub's redirect): that is
        // the resume. Hashing runs as the bytes stream through, so nothing is read twice.
        const body = Readable.fromWeb(blob.slice(start).stream() as Parameters<typeof Readable.fromWeb>[0]);
        const tap = new Transform({
          transform(chunk: Buffer, _enc, done) {
            hash.update(chunk);
            written += chunk.length;
            progress.bytesDone = base + written;
            options.onProgress?.({ ...progress });
            done(null, chunk);
          },
        });
        await pipeline(body, tap, createWriteStream(incomplete, { flags: start > 0 ? 'a' : 'w' }), { signal: options.signal });
      } catch (error) {
        if (error instanceof PullError) throw error;
        if (options.signal?.aborted) throw new PullError('DOWNLOAD_FAILED', `canceled during ${file.path}; run the pull again to resume`);
        const why = error instanceof HubApiError ? hubError(error, plan, access).message : String((error as Error)?.message ?? error);
        throw new PullError('DOWNLOAD_FAILED', `download of ${file.path} stopped at ${written} of ${file.size} bytes (${why}): run the same pull again to resume`);
      }
    }
    if (written < file.size) {
      throw new PullError('DOWNLOAD_FAILED', `download of ${file.path} ended early at ${written} of ${file.size} bytes: run the same pull again to resume`);
    }
    const actual = hash.digest('hex');
    if (written !== file.size || actual !== file.hash.hex) {
      await rm(partial, { recursive: true, force: true });
      const what = file.hash.algorithm === 'sha256' ? "SHA-256 differs from the Hub's LFS id" : "git blob id differs from the Hub's";
      throw new PullError(
        'CHECKSUM_MISMATCH',
        `${file.path} from ${plan.repo}: its ${what} (${file.hash.hex}, got ${actual}, ${written} of ${file.size} bytes); the download was refused and deleted`,
      );
    }
    await rename(incomplete, dest);
    delete manifest.incomplete[file.local];
    manifest.verified[file.local] = file.hash.hex;
    await save();
    progress.filesDone++;
    options.onProgress?.({ ...progress });
  }

  // Into place: only now does the registry see the model.
  const taken = [plan.name, `${plan.name}.safetensors`].find((entry) => existsSync(join(modelsDir, entry)));
  if (taken) throw new PullError('BAD_USER_INPUT', `${taken} appeared in ${modelsDir} during the pull; the download stays in ${partial}: choose another name to use it`);
  await rm(manifestPath);
  if (plan.kind === 'ONNX') {
    await rename(partial, join(modelsDir, plan.name));
    return join(modelsDir, plan.name);
  }
  for (const file of plan.files) await rename(join(partial, file.local), join(modelsDir, file.local));
  await rm(partial, { recursive: true, force: true });
  return join(modelsDir, plan.files.at(-1)!.local);
}
