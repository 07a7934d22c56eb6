/**
 * Generates images on an sdql server from the command line: submits, prints a line per step, and
 * writes every image.
 *
 *   node --import tsx clients/typescript/generate.ts --url http://127.0.0.1:4000 --model demo \
 *     --prompt "a lighthouse at dusk" --seed 1 -o out.png
 *
 * Several images go to out-0.png, out-1.png, …; Ctrl-C cancels the generation.
 */
import { writeFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parseArgs } from 'node:util';
import { createSdqlClient, SdqlError, type GenerateInput, type ScheduleType, type Scheduler } from './sdql-client.ts';

const USAGE = `usage: generate.ts --model ID --prompt TEXT [--url URL] [--token TOKEN] [--negative-prompt TEXT] [--seed N] [--steps N]
  [--size WxH] [--scheduler NAME] [--schedule-type DEFAULT|KARRAS|EXPONENTIAL] [--clip-skip N] [--guidance-scale X]
  [--num-images N] [-o FILE]
The token may also come from the SDQL_TOKEN environment variable.`;

const { values: args } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:4000' },
    token: { type: 'string', default: process.env.SDQL_TOKEN },
    model: { type: 'string' },
    prompt: { type: 'string' },
    'negative-prompt': { type: 'string' },
    seed: { type: 'string' },
    steps: { type: 'string' },
    size: { type: 'string' },
    scheduler: { type: 'string' },
    'schedule-type': { type: 'string' },
    'clip-skip': { type: 'string' },
    'guidance-scale': { type: 'string' },
    'num-images': { type: 'string', short: 'n' },
    output: { type: 'string', short: 'o', default: 'out.png' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (args.help || !args.model || args.prompt === undefined) {
  console.log(USAGE);
  process.exit(args.help ? 0 : 2);
}

// Numbers go to the server as given; it says what is out of range.
const number = (value: string | undefined) => (value === undefined ? undefined : Number(value));
const [width, height] = args.size?.split('x').map(Number) ?? [];
const input: GenerateInput = {
  modelId: args.model,
  prompt: args.prompt,
  negativePrompt: args['negative-prompt'],
  seed: number(args.seed),
  steps: number(args.steps),
  width,
  height,
  scheduler: args.scheduler as Scheduler | undefined,
  scheduleType: args['schedule-type'] as ScheduleType | undefined,
  clipSkip: number(args['clip-skip']),
  guidanceScale: number(args['guidance-scale']),
  numImages: number(args['num-images']),
};

const client = createSdqlClient({ url: args.url, token: args.token });
try {
  const queued = await client.generate(input);
  console.log(`generation ${queued.id}: seed ${queued.seed}, ${queued.width}x${queued.height}, ${queued.steps} steps, ${queued.scheduler}`);
  process.once('SIGINT', () => void client.cancel(queued.id).catch(() => {}));

  const final = await client.progress(queued.id, (event) => {
    if (event.status === 'QUEUED') console.log('queued');
    else if (event.status === 'RUNNING' && event.step > 0) {
      const eta = event.etaMs === null ? '' : `  ETA ${(event.etaMs / 1000).toFixed(1)}s`;
      console.log(`step ${event.step}/${event.totalSteps ?? '?'}${eta}`);
    }
  });
  if (final.status !== 'SUCCEEDED') {
    console.error(`generation ${queued.id} ${final.status}${final.error ? `: ${final.error}` : ''}`);
    process.exitCode = final.status === 'CANCELED' ? 130 : 1;
  } else {
    const { images, durationMs } = await client.generation(queued.id);
    for (const image of images) {
      const file = images.length === 1 ? args.output : numbered(args.output, image.index);
      await writeFile(file, await client.download(image));
      console.log(`wrote ${file} (seed ${image.seed})`);
    }
    console.log(`done in ${((durationMs ?? 0) / 1000).toFixed(1)}s`);
  }
} catch (error) {
  if (error instanceof SdqlError) console.error(`sdql: ${error.code ?? 'error'}: ${error.message}`);
  // fetch says only "fetch failed"; its cause says why (refused, bad port, …).
  else if (error instanceof Error) console.error(`sdql: ${error.message}${error.cause instanceof Error ? `: ${error.cause.message}` : ''} (${args.url})`);
  else throw error;
  process.exitCode = 1;
} finally {
  await client.close();
}

function numbered(file: string, index: number): string {
  const ext = extname(file);
  return `${file.slice(0, file.length - ext.length)}-${index}${ext}`;
}
