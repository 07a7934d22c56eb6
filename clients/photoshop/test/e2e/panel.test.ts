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

function sdqlEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.DATABASE_URL;
  delete env.REDIS_URL;
  delete env.SDQL_AUTH;
  return env;
}

/** Starts `sdql serve` (on `port` with the `data` folder unless told otherwise); resolves once it logs that it is ready. */
function startSdql(options: { port?: number; data?: string; args?: string[] } = {}): Promise<ChildProcess> {
  const args = ['serve', '--port', String(options.port ?? port), '--host', '127.0.0.1', '--data-dir', join(tmp, options.data ?? 'data'), '--models-dir', join(tmp, 'models'), '--cors-origins', pagesUrl, ...(options.args ?? [])];
  const child = spawn(process.execPath, [join(repo, 'bin', 'sdql.js'), ...args], {
    cwd: repo,
    env: sdqlEnv(),
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

async function stopSdql(child = sdql): Promise<void> {
  if (child === sdql) sdql = null;
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
  // Records the uploads (Chromium does not show a request's file parts to the test), and sends them on.
  await page.addInitScript(() => {
    const w = window as any;
    const send = w.fetch.bind(w);
    w.uploads = [];
    w.fetch = (url: string, init?: RequestInit) => {
      const form = init?.body;
      if (form instanceof FormData) {
        w.uploads.push(
          (async () => {
            const map = JSON.parse(String(form.get('map'))) as Record<string, string[]>;
            const files: Record<string, number[]> = {};
            for (const [key, [path]] of Object.entries(map)) files[path] = [...new Uint8Array(await (form.get(key) as Blob).arrayBuffer()).subarray(0, 32)];
            return { input: JSON.parse(String(form.get('operations'))).variables.input, files };
          })(),
        );
      }
      return send(url, init);
    };
  });
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

/** The PNG's width and height (its IHDR). */
function pngSize(bytes: number[]): { width: number; height: number } {
  const view = new DataView(new Uint8Array(bytes).buffer);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

interface Upload {
  input: Record<string, unknown>;
  /** The first bytes of each file, by its variable path. */
  files: Record<string, number[]>;
}

/** What the page has uploaded (multipart requests), as recorded by the fetch wrapper of `openPanel`. */
function uploads(page: Page): Promise<Upload[]> {
  return page.evaluate(() => Promise.all((window as any).uploads));
}

const pixel = (page: Page, x: number, y: number): Promise<number[]> =>
  page.evaluate(([x, y]) => [...(document.getElementById('document') as HTMLCanvasElement).getContext('2d')!.getImageData(x, y, 1, 1).data], [x, y]);

test('select a region, inpaint: the server cuts it out (ONLY_MASKED), previews change, and the result lands exactly on the selection', async () => {
  // 8 px of padding, so that the padded selection (56×40) is smaller than the demo model's 64×64: it goes up at full resolution.
  const page = await openPanel({ ...base(), context: 8 });
  await waitForText(page, 'status', /connected to .* sdql /);
  await waitForText(page, 'tokens', /\d+\/75 tokens \(1 chunk of 75\)/);
  const selection = { left: 40, top: 30, width: 40, height: 24 };
  await page.evaluate((rect) => (window as any).sdql.host.select(rect), selection);
  await page.locator('#app').hover();
  await waitForText(page, 'mode', /inpaint: the selection \(40×24 px at 40, 30\)/);
  await shot(page, '1-connected-with-selection');
  // Inside the selection; outside it but inside what is sent; far outside.
  const points = [
    [60, 42],
    [36, 26],
    [200, 200],
  ] as const;
  const before = await Promise.all(points.map(([x, y]) => pixel(page, x, y)));

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

  // The request: the selection with twice the padding around it, at the document's own pixels, its mask, ONLY_MASKED.
  const sent = await uploads(page);
  assert.equal(sent.length, 1);
  const { input, files } = sent[0];
  assert.equal(input.inpaintArea, 'ONLY_MASKED');
  assert.equal(input.onlyMaskedPadding, 8);
  assert.equal(input.strength, undefined);
  assert.equal((input.width as number) % 8, 0);
  assert.equal((input.height as number) % 8, 0);
  assert.deepEqual(Object.keys(files).sort(), ['variables.input.initImage.file', 'variables.input.mask.file']);
  assert.deepEqual(pngSize(files['variables.input.initImage.file']), { width: 72, height: 56 });
  assert.deepEqual(pngSize(files['variables.input.mask.file']), { width: 72, height: 56 });

  const layers = await page.evaluate(() => (window as any).sdql.host.layers);
  assert.equal(layers.length, 1);
  assert.equal(layers[0].name, 'a lighthouse at dusk · 7');
  assert.equal(layers[0].masked, true);
  assert.deepEqual(layers[0].bounds, selection);
  const painted = await Promise.all(points.map(([x, y]) => pixel(page, x, y)));
  assert.notDeepEqual(painted[0], before[0], 'the selection was painted');
  assert.deepEqual(painted.slice(1), before.slice(1), 'outside the selection nothing changed');
  await waitForText(page, 'history', /a lighthouse at dusk/);
  await shot(page, '3-placed');
  await page.close();
});

test('the Spectrum widgets: picking, sliding and checking fire what UXP documents and update the settings', async () => {
  const page = await openPanel(base());
  await waitForText(page, 'status', /connected to/);
  // What listeners see, as UXP documents it: the widget as the target, with selectedIndex / value / checked.
  await page.evaluate(() => {
    const w = window as any;
    w.seen = [];
    for (const [name, property] of [['selection-mode', 'selectedIndex'], ['steps', 'value'], ['previews', 'checked']]) {
      for (const type of ['input', 'change']) {
        document.querySelector(`[data-test="${name}"]`)!.addEventListener(type, (event) => w.seen.push(`${type} ${(event.target as Element).tagName.toLowerCase()} ${(event.target as any)[property]}`));
      }
    }
  });
  await page.evaluate(() => (window as any).sdql.host.select({ left: 10, top: 10, width: 50, height: 50 }));
  await page.locator('[data-test="selection-mode"] select').selectOption({ index: 1 });
  await waitForText(page, 'mode', /^img2img: the selection \(50×50 px at 10, 10\)/);
  await page.locator('[data-test="steps"] input').fill('33');
  await page.locator('[data-test="previews"] input').uncheck();
  const seen: string[] = await page.evaluate(() => (window as any).seen);
  for (const event of ['change sp-picker 1', 'input sp-slider 33', 'change sp-slider 33', 'change sp-checkbox false']) assert.ok(seen.includes(event), `${event} in ${seen.join(', ')}`);
  const saved = await page.evaluate(() => JSON.parse(localStorage.getItem('sdql.settings')!));
  assert.deepEqual([saved.selectionMode, saved.steps, saved.previews], ['img2img', 33, false]);
  // The server's limits bound the sliders.
  assert.deepEqual(await page.evaluate(() => ['steps', 'batch'].map((name) => document.querySelector(`[data-test="${name}"]`)!.getAttribute('max'))), ['150', '16']);
  await shot(page, '10-widgets');
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

test('a token-protected server: a refused token says what to do, a valid one generates', async () => {
  const tokensPort = await freePort();
  const data = 'data-tokens';
  const created = execFileSync(process.execPath, [join(repo, 'bin', 'sdql.js'), 'tokens', 'create', 'photoshop-e2e', '--scopes', 'GENERATE', '--data-dir', join(tmp, data)], { cwd: repo, env: sdqlEnv(), encoding: 'utf8' });
  const token = /sdql_\S+/.exec(created)?.[0];
  assert.ok(token, `sdql tokens create printed no token: ${created}`);
  const server = await startSdql({ port: tokensPort, data, args: ['--auth', 'tokens'] });
  try {
    const page = await openPanel({ ...base(), url: `http://127.0.0.1:${tokensPort}`, token: 'sdql_not-a-token', steps: 4 });
    const refused = await waitForText(page, 'status', /refused|needs a token|cannot reach/);
    assert.match(refused, /^the server refused the token \(the token is not valid: it is unknown or was revoked\): paste a valid one in the token field; .*sdql tokens create <name> --scopes GENERATE/);
    await shot(page, '8-token-refused');

    // Typed into the field (a password field), committed by leaving it.
    await page.locator('[data-test="token"] input').fill(token);
    await page.locator('[data-test="token"] input').press('Tab');
    await waitForText(page, 'status', /connected to .* sdql /);
    await page.evaluate(() => (window as any).sdql.host.select(null));
    await page.locator('[data-test="generate"]').click();
    assert.match(await waitForText(page, 'run-status', /placed|failed|error|cannot|refused/), /placed 1 layer: a lighthouse at dusk · 7/);
    assert.deepEqual(await page.evaluate(() => (window as any).sdql.host.layers.map((l: any) => l.bounds)), [{ left: 0, top: 0, width: 320, height: 240 }]);
    await waitForText(page, 'history', /a lighthouse at dusk/);
    await shot(page, '9-token-accepted');
    // The token is kept with the settings.
    assert.equal(await page.evaluate(() => JSON.parse(localStorage.getItem('sdql.settings')!).token), token);
    await page.close();
  } finally {
    await stopSdql(server);
  }
});
