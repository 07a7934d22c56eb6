// GraphiQL in a real browser (headless Chromium, driven by playwright-core) with every host but the
// server unreachable, as on an offline GPU host: the page must load all it needs from sdql, open on
// sdql's welcome tab, run its operations and show a live subscription over WebSocket. The test
// keeps screenshots in test-results/ (gitignored) to look at.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { BLOCKER, startTestServer, waitForStatus, type TestServer } from '../helpers/api.ts';
import { DEADLINE_MS, EventLog } from '../helpers/wait.ts';

const SCREENSHOTS = 'test-results';

function chromiumPath(): string {
  try {
    return execFileSync('sh', ['-c', 'command -v chromium || command -v chromium-browser'], { encoding: 'utf8' }).trim().split('\n')[0];
  } catch {
    throw new Error("this test drives Debian's Chromium and found none on PATH: install it with `apt-get install -y chromium` (.ci/run does)");
  }
}

let api: TestServer;
let browser: Browser;
let page: Page;
/** Every request the page tried to send anywhere but the server. */
const blocked: string[] = [];
/** The graphql-ws messages the page received, parsed. */
const frames = new EventLog<{ type: string; payload?: { data?: Record<string, any> } }>();
const sockets: string[] = [];

before(async () => {
  const executablePath = chromiumPath();
  api = await startTestServer();
  const server = new URL(api.server.url);
  browser = await chromium.launch({ executablePath });
  const context = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.host === server.host) return route.continue();
    blocked.push(url.href);
    return route.abort('internetdisconnected');
  });
  page = await context.newPage();
  page.on('websocket', (ws) => {
    sockets.push(ws.url());
    ws.on('framereceived', ({ payload }) => frames.push(JSON.parse(String(payload))));
  });
});

after(async () => {
  await browser?.close();
  await api?.close();
});

const RESULT = 'section[aria-label="Result Window"]';

/** Waits until the result window shows `text` (Monaco renders spaces as no-break spaces). */
async function resultShows(text: string): Promise<void> {
  await page.waitForFunction(
    ([selector, wanted]) => (document.querySelector(selector)?.textContent ?? '').replace(/\u00a0/g, ' ').includes(wanted),
    [RESULT, text] as const,
    { timeout: DEADLINE_MS },
  );
}

/** Runs one operation of the tab: the ▶ button asks which when the document has several. */
async function run(operation: string): Promise<void> {
  await page.click('.graphiql-execute-button');
  await page.getByRole('menuitem', { name: operation, exact: true }).click();
}

test('GraphiQL loads offline, runs the welcome tab and shows a live subscription', async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  try {
    await welcomeTab();
  } catch (error) {
    await page.screenshot({ path: `${SCREENSHOTS}/graphiql-failure.png` });
    throw error;
  }
});

async function welcomeTab(): Promise<void> {
  await page.goto(`${api.server.url}/graphql`, { waitUntil: 'load' });
  const editor = page.locator('section[aria-label="Operation Editor"]');
  await editor.getByText('Welcome to sdql').waitFor({ timeout: DEADLINE_MS });
  assert.equal(await page.title(), 'sdql');

  // A query of the welcome tab, and its result on the page.
  await run('Models');
  await resultShows('"name": "demo"');

  // The welcome tab's generation waits behind a busy worker, so that the subscription starts
  // before it runs and must show its events as they come.
  const blocker = await api.data<{ generate: { id: string } }>(`mutation($input: GenerateInput!) { generate(input: $input) { id } }`, { input: BLOCKER });
  await waitForStatus(api.server.url, blocker.generate.id, ['RUNNING']);
  const submitted = page.waitForResponse((r) => r.request().postData()?.includes('Txt2Img') ?? false);
  await run('Txt2Img');
  const { data } = (await (await submitted).json()) as { data: { generate: { id: string; status: string } } };
  assert.equal(data.generate.status, 'QUEUED');
  await resultShows('"status": "QUEUED"');

  // Typed as a user types, Monaco's closing brackets and quotes included.
  const variables = page.locator('section[aria-label="Variables"]');
  await variables.click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Delete');
  await page.keyboard.type(JSON.stringify({ id: data.generate.id }));
  assert.equal((await variables.locator('.graphiql-editor:not(.hidden) .view-lines').textContent())?.replace(/\u00a0/g, ' '), JSON.stringify({ id: data.generate.id }));
  await run('Progress');
  const progress = (match: (event: Record<string, any>) => boolean) => (frame: { type: string; payload?: { data?: Record<string, any> } }) =>
    frame.type === 'next' && frame.payload?.data?.generationProgress !== undefined && match(frame.payload.data.generationProgress);
  await frames.next('the QUEUED event in the page', progress((e) => e.status === 'QUEUED'));
  await resultShows('"status": "QUEUED"');

  await api.data(`mutation($id: ID!) { cancelGeneration(id: $id) { status } }`, { id: blocker.generate.id });
  await frames.next('the SUCCEEDED event in the page', progress((e) => e.status === 'SUCCEEDED'));
  await resultShows('"status": "SUCCEEDED"');
  await page.screenshot({ path: `${SCREENSHOTS}/graphiql-subscription.png` });

  const steps = frames.events.flatMap((f) => (f.type === 'next' && f.payload?.data?.generationProgress?.status === 'RUNNING' ? [f.payload.data.generationProgress.step as number] : []));
  assert.ok(steps.includes(20), `every step reached the page, the last included; got steps ${steps.join(', ')}`);
  assert.deepEqual(sockets, [`${api.server.url.replace('http', 'ws')}/graphql`], 'the subscription ran over graphql-ws on the server');

  await run('History');
  await resultShows('"prompt": "a lighthouse on a cliff at dusk"');
  await page.screenshot({ path: `${SCREENSHOTS}/graphiql-history.png` });

  assert.deepEqual(blocked, [], 'the page asked nothing of any other host');
}
