// The panel's real UI (host/browser.ts, stand-in widgets) in headless Chromium against a real
// `sdql serve` child process with the demo fixture model. Screenshots of each state go to
// test-output/screenshots/ (see the README).
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';

const root = fileURLToPath(new URL('../..', import.meta.url));
const repo = join(root, '..', '..');
const SCREENSHOTS = join(root, 'test-output', 'screenshots');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const DEADLINE_MS = Number(process.env.E2E_DEADLINE_MS ?? 120_000);
// Migrations and the model scan on a busy CI machine.
const START_DEADLINE_MS = 180_000;

let tmp: string;
let port: number;
let sdql: ChildProcess | null = null;
let pages: Server;
let pagesUrl: string;
let browser: Browser;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createNetServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** Starts `sdql serve` on `port`; resolves once it logs that it is ready. */
function startSdql(): Promise<ChildProcess> {
  const env = { ...process.env };
  delete env.DATABASE_URL;
  delete env.REDIS_URL;
  const child = spawn(process.execPath, [join(repo, 'bin', 'sdql.js'), 'serve', '--port', String(port), '--host', '127.0.0.1', '--data-dir', join(tmp, 'data'), '--models-dir', join(tmp, 'models'), '--cors-origins', pagesUrl], {
    cwd: repo,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`sdql serve did not become ready in ${START_DEADLINE_MS} ms:\n${output}`));
    }, START_DEADLINE_MS);
    const onData = (chunk: Buffer) => {
      output += chunk;
      if (output.includes('sdql is ready')) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sdql serve exited (${code}):\n${output}`));
    });
  });
}

async function stopSdql(): Promise<void> {
  const child = sdql;
  sdql = null;
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/** Opens the panel with these settings already saved (as a returning user has them). */
async function openPanel(settings: Record<string, unknown>): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 900, height: 1100 } });
  page.on('pageerror', (error) => console.error('page error:', error));
  await page.addInitScript((saved) => localStorage.setItem('sdql.settings', saved), JSON.stringify(settings));
  await page.goto(`${pagesUrl}/index.html?width=320&height=240`);
  return page;
}

const text = (page: Page, name: string) => page.locator(`[data-test="${name}"]`).first().innerText();

async function waitForText(page: Page, name: string, pattern: RegExp): Promise<string> {
  try {
    await page.waitForFunction(
      ([selector, source, flags]) => new RegExp(source, flags).test(document.querySelector(selector)?.textContent ?? ''),
      [`[data-test="${name}"]`, pattern.source, pattern.flags] as const,
      // Often, so that a state that lasts one step is seen.
      { timeout: DEADLINE_MS, polling: 10 },
    );
  } catch (error) {
    throw new Error(`${name} never matched ${pattern}; it says "${await text(page, name)}" (status: "${await text(page, 'status')}", run: "${await text(page, 'run-status')}")`, { cause: error });
  }
  return text(page, name);
}

async function shot(page: Page, name: string) {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

before(async () => {
  execFileSync(process.execPath, ['--import', 'tsx', 'scripts/build.ts', '--browser'], { cwd: root, stdio: 'pipe' });
  mkdirSync(SCREENSHOTS, { recursive: true });
  tmp = mkdtempSync(join(tmpdir(), 'sdql-panel-'));
  mkdirSync(join(tmp, 'models'));
  execFileSync(process.execPath, [join(repo, 'bin', 'sdql.js'), 'models', 'create-demo', join(tmp, 'models', 'demo')], { cwd: repo, stdio: 'pipe' });
  const dist = join(root, 'dist-browser');
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.png': 'image/png', '.json': 'application/json' };
  pages = createServer((request, response) => {
    try {
      const path = join(dist, new URL(request.url!, 'http://x').pathname);
      const body = readFileSync(path);
      response.writeHead(200, { 'content-type': types[extname(path)] ?? 'application/octet-stream' }).end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => pages.listen(0, '127.0.0.1', resolve));
  pagesUrl = `http://127.0.0.1:${(pages.address() as { port: number }).port}`;
  // The test page is a web page of another origin, which the server lets in only when told to.
  port = await freePort();
  sdql = await startSdql();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  await stopSdql();
  await new Promise((resolve) => pages?.close(resolve));
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const base = () => ({ url: `http://127.0.0.1:${port}`, prompt: 'a lighthouse at dusk', steps: 12, seedMode: 'fixed', seed: 7, numImages: 1, selectionMode: 'inpaint' });

test('select a region, generate: previews change, and the result is placed at the selection, masked to it', async () => {
  const page = await openPanel(base());
  await waitForText(page, 'status', /connected to .* sdql /);
  await waitForText(page, 'tokens', /\d+\/75 tokens \(1 chunk of 75\)/);
  const selection = { left: 40, top: 30, width: 120, height: 90 };
  await page.evaluate((rect) => (window as any).sdql.host.select(rect), selection);
  await page.locator('#app').hover();
  await waitForText(page, 'mode', /inpaint: the selection \(120×90 px at 40, 30\)/);
  await shot(page, '1-connected-with-selection');
  const before = await page.evaluate(() => {
    const c = (document.getElementById('document') as HTMLCanvasElement).getContext('2d')!;
    return { inside: [...c.getImageData(100, 75, 1, 1).data], outside: [...c.getImageData(20, 20, 1, 1).data] };
  });

  // Every preview the panel shows, in order.
  await page.evaluate(() => {
    const w = window as any;
    w.previews = [];
    new MutationObserver(() => w.previews.push((document.querySelector('[data-test="preview"]') as HTMLImageElement).src)).observe(document.querySelector('[data-test="preview"]')!, { attributes: true, attributeFilter: ['src'] });
  });
  await page.locator('[data-test="generate"]').click();
  await page.waitForFunction(() => new Set((window as any).previews).size >= 2, null, { timeout: DEADLINE_MS });
  await shot(page, '2-generating-preview');
  const status = await waitForText(page, 'run-status', /placed|failed|error|cannot/);
  assert.match(status, /placed 1 layer: a lighthouse at dusk · 7/);
  const previews: string[] = await page.evaluate(() => (window as any).previews);
  assert.ok(previews.every((src) => src.startsWith('data:image/jpeg;base64,')));

  const layers = await page.evaluate(() => (window as any).sdql.host.layers);
  assert.equal(layers.length, 1);
  assert.equal(layers[0].name, 'a lighthouse at dusk · 7');
  assert.equal(layers[0].masked, true);
  // The selection with 32 px of context, clamped to the canvas.
  assert.deepEqual(layers[0].bounds, { left: 8, top: 0, width: 184, height: 152 });
  const afterPlace = await page.evaluate(() => {
    const c = (document.getElementById('document') as HTMLCanvasElement).getContext('2d')!;
    return { inside: [...c.getImageData(100, 75, 1, 1).data], outside: [...c.getImageData(20, 20, 1, 1).data] };
  });
  assert.notDeepEqual(afterPlace.inside, before.inside, 'the selection was painted');
  assert.deepEqual(afterPlace.outside, before.outside, 'outside the selection (inside the context) nothing changed');
  await waitForText(page, 'history', /a lighthouse at dusk/);
  await shot(page, '3-placed');
  await page.close();
});

test('Cancel stops a running generation', async () => {
  const page = await openPanel({ ...base(), steps: 150, numImages: 16, prompt: 'a long one' });
  await waitForText(page, 'status', /connected/);
  await page.evaluate(() => (window as any).sdql.host.select(null));
  await page.locator('[data-test="generate"]').click();
  // Once it is on the server (the events of a step may come faster than the page redraws).
  await waitForText(page, 'run-status', /submitted|waiting|step \d+\/150/);
  await page.locator('[data-test="cancel"]').click();
  assert.equal(await waitForText(page, 'run-status', /^canceled$|failed|placed/), 'canceled');
  assert.equal(await page.evaluate(() => (window as any).sdql.host.layers.length), 0, 'nothing placed');
  await shot(page, '4-canceled');
  await page.close();
});

test('the panel reconnects when the server restarts', async () => {
  const page = await openPanel(base());
  await waitForText(page, 'status', /connected to/);
  await stopSdql();
  await waitForText(page, 'status', /lost|cannot reach/);
  await shot(page, '5-server-stopped');
  sdql = await startSdql();
  await waitForText(page, 'status', /connected to/);
  await shot(page, '6-reconnected');
  await page.close();
});

test('an unreachable server shows why, and what to check', async () => {
  const page = await openPanel({ ...base(), url: `http://127.0.0.1:${await freePort()}` });
  const status = await waitForText(page, 'status', /cannot reach/);
  assert.match(status, /cannot reach http:\/\/127\.0\.0\.1:\d+ .*is `sdql serve` running there.*network permissions/);
  await shot(page, '7-unreachable');
  await page.close();
});
