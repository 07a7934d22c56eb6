// The README runs as written: every ```graphql block, in order, against a real server with the demo
// model, LoRA and embedding that `sdql models create-demo` writes. Each operation must validate, and
// run without errors unless an HTML comment `<!-- needs: … -->` saying what it needs (`<!-- needs:
// real model -->`, `<!-- needs: a queued or running generation -->`) precedes its block. A "…"
// stands for an id the reader pastes from an earlier result: `imageId: "…"` the last image made,
// any other "…" the last generation. Failures name the block by line and first line.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Kind, parse, print, validate, type DocumentNode, type OperationDefinitionNode } from 'graphql';
import { createDemoAdapters } from '../../src/diffusion/fixtures/adapters.ts';
import { schema } from '../../src/graphql/index.ts';
import { collectWs, startTestServer, waitForStatus, type TestServer } from '../helpers/api.ts';
import { pollUntil } from '../helpers/wait.ts';

const README = join(import.meta.dirname, '../../README.md');
const MARKER = /^<!--\s*needs:\s*\S.*-->$/;

interface Block {
  /** Where it is: `README.md:<line of its opening fence> (<its first line>)`. */
  label: string;
  text: string;
  validateOnly: boolean;
}

function graphqlBlocks(markdown: string): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== '```graphql') continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i].trim() !== '```'; i++) body.push(lines[i]);
    let before = start - 1;
    while (before >= 0 && lines[before].trim() === '') before--;
    const first = body.find((l) => l.trim() !== '')?.trim() ?? '';
    blocks.push({ label: `README.md:${start + 1} (${first})`, text: body.join('\n'), validateOnly: before >= 0 && MARKER.test(lines[before].trim()) });
  }
  return blocks;
}

let api: TestServer;
const ids: { generation?: string; image?: string } = {};

before(async () => {
  api = await startTestServer();
  await createDemoAdapters(join(api.config.modelsDir, 'demo'), api.config.lorasDir, api.config.embeddingsDir);
  await api.data(`mutation { rescanModels { scannedAt } }`);
});

after(async () => {
  await api?.close();
});

/** The block with its "…" ids filled in from earlier blocks' results. */
function withIds(block: Block): string {
  const id = (kind: keyof typeof ids) => {
    const value = ids[kind];
    assert.ok(value, `${block.label}: uses a ${kind} id ("…") before any earlier block made a ${kind}`);
    return `"${value}"`;
  };
  return block.text.replace(/imageId: "…"/g, () => `imageId: ${id('image')}`).replace(/"…"/g, () => id('generation'));
}

/** Remembers the ids a generate made, once it has run, for the blocks after it. */
async function remember(data: Record<string, any> | undefined, label: string): Promise<void> {
  const generated = data?.generate?.id as string | undefined;
  if (!generated) return;
  await waitForStatus(api.server.url, generated, ['SUCCEEDED']).catch((error: Error) => assert.fail(`${label}: its generation did not succeed: ${error.message}`));
  const { generation } = await api.data<{ generation: { images: { id: string }[] } }>(`query($id: ID!) { generation(id: $id) { images { id } } }`, { id: generated });
  ids.generation = generated;
  ids.image = generation.images[0].id;
}

/** A subscription runs when it sends a first event without errors; models are rescanned until one comes (modelsChanged says nothing otherwise). */
async function subscribe(document: string, label: string): Promise<void> {
  const client = api.wsClient();
  const subscription = collectWs(client, document);
  let failure: Error | undefined;
  subscription.done().catch((error: Error) => (failure = error));
  try {
    await pollUntil(
      async () => {
        if (failure) assert.fail(`${label}: ${failure.message}`);
        if (!subscription.events.length) await api.data(`mutation { rescanModels { scannedAt } }`);
        return subscription.events.length;
      },
      (count) => count > 0,
      `${label}: a first event`,
    );
  } finally {
    await client.dispose();
  }
}

/** Parses, validates and (unless it is validate-only) runs one block, operation by operation; throws on the first problem. */
async function check(block: Block): Promise<void> {
  let document: DocumentNode;
  try {
    document = parse(block.validateOnly ? block.text : withIds(block));
  } catch (error) {
    assert.fail(`${block.label}: does not parse: ${(error as Error).message}`);
  }
  for (const operation of document.definitions) {
    assert.equal(operation.kind, Kind.OPERATION_DEFINITION, `${block.label}: holds a ${operation.kind}, not an operation`);
    const single = print({ kind: Kind.DOCUMENT, definitions: [operation] });
    const errors = validate(schema, parse(single)).map((e) => e.message);
    assert.deepEqual(errors, [], `${block.label}: invalid operation:\n${single}\n${errors.join('\n')}`);
    if (block.validateOnly) continue;
    if ((operation as OperationDefinitionNode).operation === 'subscription') {
      await subscribe(single, block.label);
      continue;
    }
    const result = await api.gql(single);
    assert.deepEqual(result.errors ?? [], [], `${block.label}: errors running\n${single}\n${JSON.stringify(result.errors)}`);
    await remember(result.data, block.label);
  }
}

test('every GraphQL block of the README validates and runs against the demo models', async () => {
  const blocks = graphqlBlocks(readFileSync(README, 'utf8'));
  assert.ok(blocks.length >= 10, `found only ${blocks.length} graphql blocks in the README`);
  // Every block is tried, so that one run names every block to fix.
  const failures: string[] = [];
  for (const block of blocks) await check(block).catch((error: Error) => failures.push(error.message));
  assert.deepEqual(failures, [], `${failures.length} of ${blocks.length} README blocks fail:\n\n${failures.join('\n\n')}`);
});
