// A stand-in for the Hugging Face Hub's file API on a local port, serving repositories from folders:
// what @huggingface/hub calls (listFiles, fileDownloadInfo, downloadFile) answered as the Hub does.
//   GET /api/models/{repo}/tree/{revision}[/{path}]?recursive=…  → [{ type, oid, size, path, lfs? }]
//   GET /{repo}/resolve/{revision}/{path}  → a small file itself (ETag: its git blob id), or for an
//       LFS file a 302 to its content with X-Linked-Size, X-Linked-ETag (the SHA-256) and X-Repo-Commit
//   GET /lfs/{sha256}  → the content, with Range (206, Content-Range) as a CDN serves it
// Unknown repositories answer 401 without a token and 404 with one (X-Error-Code: RepoNotFound), an
// unknown revision 404 RevisionNotFound, a missing file 404 EntryNotFound; a gated repository 401
// without a token and 403 with a wrong one.
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { cp, mkdir, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative } from 'node:path';
import { createFixturePipeline } from '../../src/diffusion/fixtures/index.ts';

interface HubFile {
  path: string;
  content: Buffer;
  lfs: boolean;
  /** git blob id (SHA-1 of `blob <size>\0` + content): what the Hub calls a file's oid. */
  oid: string;
  sha256: string;
}

export interface HubRepo {
  /** revision → folder whose files are the repository at that revision. */
  revisions: Record<string, string>;
  /** Only this bearer token may read it. */
  token?: string;
}

// The Hub stores these as LFS (its default .gitattributes).
const LFS = /\.(?:onnx|onnx_data|pb|data|safetensors|bin|ckpt)$/;

function readTree(root: string): HubFile[] {
  const files: HubFile[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else {
        const content = readFileSync(full);
        const path = relative(root, full).split('\\').join('/');
        const oid = createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
        files.push({ path, content, lfs: LFS.test(path), oid, sha256: createHash('sha256').update(content).digest('hex') });
      }
    }
  };
  walk(root);
  return files.sort((a, b) => (a.path < b.path ? -1 : 1));
}

export class StandInHub {
  readonly requests: { url: string; range?: string; authorization?: string }[] = [];
  private readonly trees = new Map<string, Map<string, HubFile[]>>();
  private readonly tokens = new Map<string, string | undefined>();
  /** LFS contents served in place of the listed one (a corrupted upload, a bad mirror). */
  private readonly tampered = new Map<string, Buffer>();
  /** Cut the connection after this many bytes of the next download of a file (by SHA-256). */
  private readonly cuts = new Map<string, number>();
  private readonly server: Server;
  url = '';

  constructor(repos: Record<string, HubRepo>) {
    for (const [id, repo] of Object.entries(repos)) {
      this.trees.set(id, new Map(Object.entries(repo.revisions).map(([rev, dir]) => [rev, readTree(dir)])));
      this.tokens.set(id, repo.token);
    }
    this.server = createServer((req, res) => this.handle(req, res));
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  file(repo: string, path: string, revision = 'main'): HubFile {
    const file = this.trees.get(repo)?.get(revision)?.find((f) => f.path === path);
    if (!file) throw new Error(`the stand-in has no ${repo}/${path}`);
    return file;
  }

  /** Serves other bytes than the listing's for this file from now on. */
  tamper(repo: string, path: string): void {
    const file = this.file(repo, path);
    const content = Buffer.from(file.content);
    content[content.length >> 1] ^= 0xff;
    this.tampered.set(file.sha256, content);
  }

  /** The next download of this file breaks off after `bytes` bytes. */
  cutNextDownload(repo: string, path: string, bytes: number): void {
    this.cuts.set(this.file(repo, path).sha256, bytes);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', this.url);
    this.requests.push({ url: url.pathname, range: req.headers.range, authorization: req.headers.authorization });
    const path = decodeURIComponent(url.pathname);
    const lfs = path.match(/^\/lfs\/([0-9a-f]{64})$/);
    if (lfs) return this.serveLfs(lfs[1], req, res);
    const api = path.match(/^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)(?:\/(.*))?$/);
    const resolve = path.match(/^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/);
    const match = api ?? resolve;
    if (!match) return error(res, 404, 'Not Found', undefined);
    const [, repo, revision, rest = ''] = match;
    const tree = this.trees.get(repo);
    const bearer = req.headers.authorization?.replace(/^Bearer /, '');
    const token = this.tokens.get(repo);
    if (!tree || (token && bearer !== token)) {
      // The Hub does not tell a private repository from a missing one.
      if (!bearer) return error(res, 401, 'Repository not found', tree ? 'GatedRepo' : 'RepoNotFound');
      return tree ? error(res, 403, `Access to model ${repo} is restricted`, 'GatedRepo') : error(res, 404, 'Repository not found', 'RepoNotFound');
    }
    const files = tree.get(revision);
    if (!files) return error(res, 404, `Invalid rev id: ${revision}`, 'RevisionNotFound');
    if (api) {
      const prefix = rest ? `${rest}/` : '';
      const inside = files.filter((f) => f.path.startsWith(prefix));
      if (rest && !inside.length) return error(res, 404, `${rest} does not exist on "${revision}"`, 'EntryNotFound');
      const recursive = url.searchParams.get('recursive') === 'true';
      const entries = new Map<string, unknown>();
      for (const f of inside) {
        const segments = f.path.slice(prefix.length).split('/');
        // Directories as the Hub lists them: one entry each, before what is inside.
        for (let i = 1; i < segments.length && (recursive || i === 1); i++) {
          const dir = prefix + segments.slice(0, i).join('/');
          if (!entries.has(dir)) entries.set(dir, { type: 'directory', oid: createHash('sha1').update(dir).digest('hex'), size: 0, path: dir });
        }
        if (!recursive && segments.length > 1) continue;
        entries.set(f.path, {
          type: 'file',
          oid: f.oid,
          size: f.lfs ? 134 : f.content.length,
          path: f.path,
          ...(f.lfs ? { lfs: { oid: f.sha256, size: f.content.length, pointerSize: 134 } } : {}),
        });
      }
      res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' });
      return void res.end(JSON.stringify([...entries.values()]));
    }
    const file = files.find((f) => f.path === rest);
    if (!file) return error(res, 404, 'Entry not found', 'EntryNotFound');
    const commit = createHash('sha1').update(`${repo}@${revision}`).digest('hex');
    if (file.lfs) {
      res.writeHead(302, {
        Location: `/lfs/${file.sha256}`,
        'X-Linked-Size': String(file.content.length),
        'X-Linked-ETag': `"${file.sha256}"`,
        ETag: `"${file.oid}"`,
        'X-Repo-Commit': commit,
      });
      return void res.end();
    }
    sendRange(req, res, file.content, { ETag: `"${file.oid}"`, 'X-Repo-Commit': commit });
  }

  private serveLfs(sha256: string, req: IncomingMessage, res: ServerResponse): void {
    const file = [...this.trees.values()].flatMap((t) => [...t.values()].flat()).find((f) => f.sha256 === sha256);
    if (!file) return error(res, 404, 'Not Found', undefined);
    const content = this.tampered.get(sha256) ?? file.content;
    const cut = this.cuts.get(sha256);
    if (cut !== undefined && !req.headers.range?.endsWith('-0')) {
      this.cuts.delete(sha256);
      // Headers for the whole file, then part of it, then a dropped connection.
      res.writeHead(200, { 'Content-Length': String(content.length), 'Accept-Ranges': 'bytes', ETag: `"${sha256}"` });
      res.write(content.subarray(0, cut), () => res.socket?.destroy());
      return;
    }
    sendRange(req, res, content, { ETag: `"${sha256}"` });
  }
}

function error(res: ServerResponse, status: number, message: string, code: string | undefined): void {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', ...(code ? { 'X-Error-Code': code } : {}) });
  res.end(JSON.stringify({ error: message }));
}

function sendRange(req: IncomingMessage, res: ServerResponse, content: Buffer, headers: Record<string, string>): void {
  const range = req.headers.range?.match(/^bytes=(\d+)-(\d*)$/);
  if (!range) {
    res.writeHead(200, { ...headers, 'Content-Length': String(content.length), 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream' });
    return void res.end(content);
  }
  const start = Number(range[1]);
  const end = range[2] ? Math.min(Number(range[2]), content.length - 1) : content.length - 1;
  if (start >= content.length) {
    res.writeHead(416, { 'Content-Range': `bytes */${content.length}` });
    return void res.end();
  }
  res.writeHead(206, {
    ...headers,
    'Content-Range': `bytes ${start}-${end}/${content.length}`,
    'Content-Length': String(end - start + 1),
    'Accept-Ranges': 'bytes',
    'Content-Type': 'application/octet-stream',
  });
  res.end(content.subarray(start, end + 1));
}

/**
 * Repositories as the Hub holds them, written under `root` from the fixture builder's pipeline:
 * - `org/tiny-sd-onnx`: an Optimum-style export beside what sdql skips (PyTorch weights, a safety checker, a README);
 * - `org/multi`: the pipeline in a subfolder, on an `onnx` branch only;
 * - `org/single-ckpt`: one `.safetensors` checkpoint with its LDM yaml;
 * - `org/pytorch-only`: a diffusers pipeline without ONNX files;
 * - `org/two-ckpts`: two checkpoints, neither chosen;
 * - `org/gated`: a checkpoint that only the token `hf_gated_token` may read.
 */
export async function writeHubRepos(root: string): Promise<Record<string, HubRepo>> {
  const onnx = join(root, 'tiny-sd-onnx');
  await createFixturePipeline(onnx, { externalData: 'model.onnx_data' });
  await mkdir(join(onnx, 'safety_checker'));
  await writeFile(join(onnx, 'safety_checker', 'model.onnx'), randomBytes(4096));
  await writeFile(join(onnx, 'unet', 'diffusion_pytorch_model.safetensors'), checkpointBytes(1));
  await writeFile(join(onnx, 'README.md'), '# tiny-sd-onnx\n');
  const multi = join(root, 'multi');
  await cp(onnx, join(multi, 'sd'), { recursive: true });
  const single = join(root, 'single-ckpt');
  await mkdir(single);
  await writeFile(join(single, 'tiny.safetensors'), checkpointBytes(2));
  await writeFile(join(single, 'tiny.yaml'), 'model:\n  params:\n    parameterization: "eps"\n');
  await writeFile(join(single, 'README.md'), '# a checkpoint\n');
  const pytorch = join(root, 'pytorch-only');
  await mkdir(join(pytorch, 'unet'), { recursive: true });
  await writeFile(join(pytorch, 'model_index.json'), '{"_class_name": "StableDiffusionPipeline"}');
  await writeFile(join(pytorch, 'unet', 'diffusion_pytorch_model.safetensors'), checkpointBytes(3));
  const two = join(root, 'two-ckpts');
  await mkdir(two);
  await writeFile(join(two, 'a.safetensors'), checkpointBytes(4));
  await writeFile(join(two, 'b.safetensors'), checkpointBytes(5));
  return {
    'org/two-ckpts': { revisions: { main: two } },
    'org/tiny-sd-onnx': { revisions: { main: onnx } },
    'org/multi': { revisions: { onnx: multi } },
    'org/single-ckpt': { revisions: { main: single } },
    'org/pytorch-only': { revisions: { main: pytorch } },
    'org/gated': { revisions: { main: single }, token: 'hf_gated_token' },
  };
}

/** A small valid safetensors file (one tensor of random bytes): what a pull moves, not what a test runs. */
function checkpointBytes(seed: number): Buffer {
  const data = randomBytes(256 * 1024 + seed);
  const header = Buffer.from(JSON.stringify({ weight: { dtype: 'U8', shape: [data.length], data_offsets: [0, data.length] } }));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  return Buffer.concat([length, header, data]);
}
