import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DiffusionError } from '../../src/diffusion/errors.ts';
import { emptyChunk, isWeighted } from '../../src/diffusion/prompt/chunks.ts';
import { preparePrompts, summarizePrompt, type PromptSyntax } from '../../src/diffusion/prompt/prepare.ts';
import { BOS, EOS, fakeTokenizer, wordIds, words } from './fake-tokenizer.ts';

const tokenizer = fakeTokenizer();
const prepare = (prompt: string, negativePrompt = '', syntax: PromptSyntax = 'A1111', steps = 10) =>
  preparePrompts({ prompt, negativePrompt, steps, syntax, tokenizer });
/** diffusers' input ids: start, ids, end, then the pad token to 77. */
const diffusersIds = (ids: number[], pad = EOS) => [BOS, ...ids, EOS, ...new Array(75 - ids.length).fill(pad)];

test('fast path: a plain prompt of at most 75 tokens is exactly diffusers input, unweighted, in both syntaxes', () => {
  const prompt = 'a photo of an astronaut riding a horse on mars, high detail: 8k | hdr';
  const a1111 = prepare(prompt, 'blurry, low quality');
  assert.equal(a1111.chunkCount, 1);
  assert.equal(a1111.positive.texts.length, 1);
  assert.deepEqual(a1111.positive.textIndexAtStep, new Array(10).fill(0));
  const [chunk] = a1111.positive.texts[0].chunks;
  assert.deepEqual(chunk.tokenIds, diffusersIds(tokenizer.tokenize(prompt)));
  assert.equal(isWeighted(chunk), false);
  assert.deepEqual(a1111.negative.texts[0].chunks[0].tokenIds, diffusersIds(tokenizer.tokenize('blurry, low quality')));
  assert.deepEqual(a1111, prepare(prompt, 'blurry, low quality', 'PLAIN'));

  const sd2 = fakeTokenizer(0);
  const plain = preparePrompts({ prompt: words(75), negativePrompt: '', steps: 4, syntax: 'A1111', tokenizer: sd2 });
  assert.deepEqual(plain.positive.texts[0].chunks[0].tokenIds, diffusersIds(wordIds(75), 0));
  assert.deepEqual(plain.negative.texts[0].chunks[0].tokenIds, diffusersIds([], 0));
});

test('the fast path holds for random plain prompts', () => {
  let s = 7;
  const rnd = (n: number) => (s = (s * 48271) % 2147483647) % n;
  const vocabulary = ['cat', 'w3', ',', 'a', 'red', ':', '|', 'BREAKfast', 'the', '.', 'x1'];
  for (let k = 0; k < 200; k++) {
    const prompt = Array.from({ length: rnd(60) }, () => vocabulary[rnd(vocabulary.length)]).join(rnd(2) ? ' ' : '  ');
    const prepared = prepare(prompt);
    assert.deepEqual(prepared, prepare(prompt, '', 'PLAIN'), prompt);
    assert.deepEqual(prepared.positive.texts[0].chunks[0].tokenIds, diffusersIds(tokenizer.tokenize(prompt)), prompt);
  }
});

test('PLAIN truncates at 75 tokens and reads no syntax', () => {
  const long = prepare(words(100), '', 'PLAIN');
  assert.equal(long.chunkCount, 1);
  assert.deepEqual(long.positive.texts[0].chunks[0].tokenIds, [BOS, ...wordIds(75), EOS]);
  const syntax = prepare('(w1:1.5) [w2:w3:2] <lora:a:1>', '', 'PLAIN');
  assert.deepEqual(syntax.loras, []);
  assert.equal(isWeighted(syntax.positive.texts[0].chunks[0]), false);
  assert.equal(syntax.positive.texts[0].text, '(w1:1.5) [w2:w3:2] <lora:a:1>');
});

test('A1111: LoRA tags, schedules, weights and chunk padding across prompt and negative prompt', () => {
  const p = prepare(`<lora:style:0.7>(w1:1.5) [w2:w3:0.5] BREAK ${words(5, 10)}`, 'w9 <lora:neg:1>', 'A1111', 4);
  assert.deepEqual(p.loras, [{ name: 'style', weight: 0.7, unetWeight: 0.7 }]);
  assert.deepEqual(
    p.positive.texts.map((t) => t.text),
    ['(w1:1.5) w2 BREAK w10 w11 w12 w13 w14', '(w1:1.5) w3 BREAK w10 w11 w12 w13 w14'],
  );
  assert.deepEqual(p.positive.textIndexAtStep, [0, 0, 0, 1]);
  assert.equal(p.chunkCount, 2);
  const [first, second] = p.positive.texts[0].chunks;
  assert.deepEqual(first.tokenIds.slice(0, 4), [BOS, 1001, 1002, EOS]);
  assert.deepEqual(first.weights.slice(0, 4), [1, 1.5, 1, 1]);
  assert.deepEqual(second.tokenIds.slice(0, 7), [BOS, ...wordIds(5, 10), EOS]);
  // The negative prompt keeps its tag as text and is padded with an empty chunk.
  const negative = p.negative.texts[0];
  assert.equal(negative.text, 'w9 <lora:neg:1>');
  assert.deepEqual(negative.chunks[1], emptyChunk(tokenizer));
});

test('an invalid LoRA tag is a BAD_USER_INPUT error', () => {
  assert.throws(
    () => prepare('a <lora:style:heavy>'),
    (e: unknown) => e instanceof DiffusionError && e.code === 'BAD_USER_INPUT' && e.message.includes('<lora:style:heavy>'),
  );
});

test('the token counter shows what A1111 shows', () => {
  assert.deepEqual(summarizePrompt('w1 (w2:1.2) <lora:a:0.5>', tokenizer, { steps: 20 }), {
    tokenCount: 2,
    maxLength: 75,
    chunkCount: 1,
    segments: [
      { text: 'w1 ', weight: 1 },
      { text: 'w2', weight: 1.2 },
      { text: ' ', weight: 1 },
    ],
    loras: [{ name: 'a', weight: 0.5, unetWeight: 0.5 }],
  });
  assert.equal(summarizePrompt('', tokenizer, { steps: 20 }).maxLength, 75);
  const broken = summarizePrompt(`w1 BREAK ${words(80)}`, tokenizer, { steps: 20 });
  assert.deepEqual([broken.tokenCount, broken.maxLength, broken.chunkCount], [155, 225, 3]);
  // The longest of the scheduled texts is counted.
  const edited = summarizePrompt(`[${words(3)}:${words(90)}:5]`, tokenizer, { steps: 20 });
  assert.deepEqual([edited.tokenCount, edited.chunkCount], [90, 2]);
  // Invalid tags do not stop the counter.
  assert.equal(summarizePrompt('w1 <lora:a:heavy>', tokenizer, { steps: 20 }).tokenCount, 1);
});
