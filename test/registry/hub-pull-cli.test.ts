// `sdql models pull` as a user runs it (a child process), against a stand-in Hub on a local port.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { inspectModelFolder } from '../../src/diffusion/model-folder.ts';
import { StandInHub, writeHubRepos } from '../helpers/hub.ts';

const SDQL = resolve(fileURLToPath(import.meta.url), '../../../bin/sdql.js');

describe('sdql models pull', () => {
  let root: string;
  let hub: StandInHub;
  let modelsDir: string;
  let run = 0;

  /** Runs `sdql models pull …` into this test's models folder; resolves with the exit code and output. */
  async function pull(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stderr: string }> {
    const options = { timeout: 60_000, env: { ...process.env, HF_ENDPOINT: hub.url, HF_TOKEN: '', SDQL_MODELS_DIR: modelsDir, ...env } };
    try {
      const { stderr } = await promisify(execFile)(process.execPath, [SDQL, 'models', 'pull', ...args], options);
      return { code: 0, stderr };
    } catch (error) {
      const e = error as { code?: number; stderr: string };
      assert.equal(typeof e.code, 'number', `sdql did not exit normally: ${String(error)}`);
      return { code: e.code!, stderr: e.stderr };
    }
  }

  /** Every file under `dir`, relative to it. */
  const filesIn = (dir: string): string[] =>
    readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
      .sort();

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'sdql-hub-'));
    hub = await new StandInHub(await writeHubRepos(join(root, 'repos'))).start();
  });
  after(async () => {
    await hub.close();
    await rm(root, { recursive: true, force: true });
  });
  beforeEach(() => {
    modelsDir = join(root, `models-${run++}`);
  });

  test('pulls an ONNX pipeline: its files byte for byte, not the PyTorch weights, safety checker or README', async () => {
    const { code, stderr } = await pull(['org/tiny-sd-onnx']);
    assert.equal(code, 0, stderr);
    assert.match(stderr, /ONNX pipeline/);
    assert.match(stderr, /skipping 3 files/);
    const dir = join(modelsDir, 'tiny-sd-onnx');
    const source = join(root, 'repos', 'tiny-sd-onnx');
    const expected = filesIn(source).filter((f) => !f.startsWith('safety_checker') && f !== 'README.md' && !f.endsWith('.safetensors'));
    assert.ok(expected.includes('unet/model.onnx_data'), 'the fixture has external data');
    assert.deepEqual(filesIn(dir), expected);
    for (const file of expected) assert.ok(readFileSync(join(dir, file)).equals(readFileSync(join(source, file))), file);
    assert.deepEqual(readdirSync(modelsDir), ['tiny-sd-onnx'], 'nothing else left in the models folder');
    const model = await inspectModelFolder(dir);
    assert.equal(model.error, undefined);
    assert.equal(model.supported, true);
  });

  test('--revision, --subfolder and --name: the pipeline of a branch, from inside the repository', async () => {
    const { code, stderr } = await pull(['org/multi', '--revision', 'onnx', '--subfolder', 'sd', '--name', 'mine']);
    assert.equal(code, 0, stderr);
    assert.equal((await inspectModelFolder(join(modelsDir, 'mine'))).error, undefined);
    const main = await pull(['org/multi', '--subfolder', 'sd', '--name', 'other']);
    assert.equal(main.code, 1);
    assert.match(main.stderr, /the Hub has no org\/multi .*check the repository id and revision/);
  });

  test('a repository of one checkpoint: the file and its yaml land in the models folder under the repository name', async () => {
    const { code, stderr } = await pull(['org/single-ckpt']);
    assert.equal(code, 0, stderr);
    assert.match(stderr, /checkpoint, 2 files/);
    assert.deepEqual(readdirSync(modelsDir).sort(), ['single-ckpt.safetensors', 'single-ckpt.yaml']);
    assert.ok(readFileSync(join(modelsDir, 'single-ckpt.safetensors')).equals(readFileSync(join(root, 'repos', 'single-ckpt', 'tiny.safetensors'))));
  });

  test('--file pulls one checkpoint of any repository, named after the file', async () => {
    const { code, stderr } = await pull(['org/tiny-sd-onnx', '--file', 'unet/diffusion_pytorch_model.safetensors']);
    assert.equal(code, 0, stderr);
    assert.deepEqual(readdirSync(modelsDir), ['diffusion_pytorch_model.safetensors']);
    const missing = await pull(['org/tiny-sd-onnx', '--file', 'unet/nothing.safetensors']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /has no file "unet\/nothing\.safetensors"/);
  });

  test('an interrupted download resumes where it stopped, with a Range request', async () => {
    const path = 'unet/model.onnx_data';
    const file = hub.file('org/tiny-sd-onnx', path);
    const cut = Math.floor(file.content.length / 3);
    hub.cutNextDownload('org/tiny-sd-onnx', path, cut);
    const first = await pull(['org/tiny-sd-onnx']);
    assert.equal(first.code, 1);
    assert.match(first.stderr, /download of unet\/model\.onnx_data stopped .*run the same pull again to resume/);
    assert.deepEqual(readdirSync(modelsDir), ['.partial-tiny-sd-onnx'], 'no model yet, only the partial download');
    const incomplete = join(modelsDir, '.partial-tiny-sd-onnx', `${path}.incomplete`);
    const kept = statSync(incomplete).size;
    assert.ok(kept > 0 && kept <= cut, `kept ${kept} bytes of the ${cut} sent`);
    const scanned = await import('../../src/diffusion/models-dir.ts').then((m) => m.scanModelsDir(modelsDir));
    assert.deepEqual(scanned, [], 'the scan does not see an unfinished pull');

    const before = hub.requests.length;
    const second = await pull(['org/tiny-sd-onnx']);
    assert.equal(second.code, 0, second.stderr);
    const ranges = hub.requests.slice(before).filter((r) => r.url === `/lfs/${file.sha256}`).map((r) => r.range);
    assert.ok(ranges.includes(`bytes=${kept}-${file.content.length - 1}`), `asked for the rest: ${JSON.stringify(ranges)}`);
    assert.ok(readFileSync(join(modelsDir, 'tiny-sd-onnx', path)).equals(file.content));
    assert.deepEqual(readdirSync(modelsDir), ['tiny-sd-onnx']);
  });

  test('a file whose SHA-256 is not its LFS id is refused and nothing is left behind', async () => {
    const hubs = await new StandInHub(await writeHubRepos(join(root, `tampered-${run}`))).start();
    try {
      hubs.tamper('org/tiny-sd-onnx', 'unet/model.onnx');
      const { code, stderr } = await pull(['org/tiny-sd-onnx'], { HF_ENDPOINT: hubs.url });
      assert.equal(code, 1);
      assert.match(stderr, /unet\/model\.onnx from org\/tiny-sd-onnx: its SHA-256 differs from the Hub's LFS id .*refused and deleted/);
      assert.deepEqual(readdirSync(modelsDir), []);
    } finally {
      await hubs.close();
    }
  });

  test('a missing repository or revision: a clear error, nothing written', async () => {
    const anonymous = await pull(['org/nope']);
    assert.equal(anonymous.code, 1);
    assert.match(anonymous.stderr, /refused org\/nope without a token: it does not exist, or it is private or gated; set HF_TOKEN/);
    const withToken = await pull(['org/nope'], { HF_TOKEN: 'hf_other' });
    assert.equal(withToken.code, 1);
    assert.match(withToken.stderr, /the Hub has no org\/nope \(Repository not found\)/);
    const revision = await pull(['org/tiny-sd-onnx', '--revision', 'v9']);
    assert.equal(revision.code, 1);
    assert.match(revision.stderr, /the Hub has no org\/tiny-sd-onnx at revision "v9"/);
    assert.equal(existsSync(modelsDir) && readdirSync(modelsDir).length > 0, false);
  });

  test('a gated repository needs HF_TOKEN', async () => {
    const denied = await pull(['org/gated'], { HF_TOKEN: 'hf_wrong' });
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /refused HF_TOKEN access to org\/gated: for a gated repository accept its conditions/);
    const { code, stderr } = await pull(['org/gated'], { HF_TOKEN: 'hf_gated_token' });
    assert.equal(code, 0, stderr);
    assert.ok(existsSync(join(modelsDir, 'gated.safetensors')));
    assert.ok(hub.requests.some((r) => r.url.startsWith('/api/models/org/gated/') && r.authorization === 'Bearer hf_gated_token'));
  });

  test('a repository without a usable model, and bad input, are refused before any download', async () => {
    const pytorch = await pull(['org/pytorch-only']);
    assert.equal(pytorch.code, 1);
    assert.match(pytorch.stderr, /holds no model sdql can use: it is a diffusers pipeline without ONNX files/);
    const two = await pull(['org/two-ckpts']);
    assert.equal(two.code, 1);
    assert.match(two.stderr, /holds several checkpoints \(a\.safetensors, b\.safetensors\): choose one with --file \(pullModel: file\)/);
    const reserved = await pull(['org/single-ckpt', '--name', 'loras']);
    assert.equal(reserved.code, 2);
    assert.match(reserved.stderr, /"loras" is the name of a folder sdql reads/);
    const badId = await pull(['not a repo']);
    assert.equal(badId.code, 2);
    assert.match(badId.stderr, /"not a repo" is not a Hugging Face repository id/);
    const badName = await pull(['org/single-ckpt', '--name', '../up']);
    assert.equal(badName.code, 2);
    assert.match(badName.stderr, /"\.\.\/up" cannot name a model/);
    assert.equal(existsSync(modelsDir) && readdirSync(modelsDir).length > 0, false);
    assert.equal((await pull(['org/single-ckpt'])).code, 0);
    const clash = await pull(['org/single-ckpt']);
    assert.equal(clash.code, 2);
    assert.match(clash.stderr, /a model named "single-ckpt" is in .* already \(single-ckpt\.safetensors\)/);
  });
});
