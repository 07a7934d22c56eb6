import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chunkSegments, emptyChunk, isWeighted, padToSameChunkCount, type FindEmbedding } from '../../src/diffusion/prompt/chunks.ts';
import { parsePromptAttention } from '../../src/diffusion/prompt/parse.ts';
import { BOS, COMMA, EOS, fakeTokenizer, wordIds, words } from './fake-tokenizer.ts';

const tokenizer = fakeTokenizer();
const chunk = (text: string, options = {}) => chunkSegments(parsePromptAttention(text), tokenizer, options);
/** The ids between the start token and the end token of a chunk. */
const body = (ids: number[]) => ids.slice(1, ids.indexOf(EOS, 1));

test('a short prompt is one chunk: start, ids, end, padding to 77, all weights 1', () => {
  const { chunks, tokenCount } = chunk(words(5));
  assert.equal(chunks.length, 1);
  assert.deepEqual(chunks[0].tokenIds, [BOS, ...wordIds(5), ...new Array(71).fill(EOS)]);
  assert.deepEqual(chunks[0].weights, new Array(77).fill(1));
  assert.equal(tokenCount, 5);
  assert.equal(isWeighted(chunks[0]), false);
});

test('padding after the end token uses the pad token when it differs (SD 2)', () => {
  const { chunks } = chunkSegments(parsePromptAttention(words(3)), fakeTokenizer(0));
  assert.deepEqual(chunks[0].tokenIds, [BOS, ...wordIds(3), EOS, ...new Array(72).fill(0)]);
  assert.deepEqual(emptyChunk(fakeTokenizer(0)).tokenIds, [BOS, EOS, ...new Array(75).fill(0)]);
});

test('75 tokens fill one chunk exactly; the 76th starts another', () => {
  const full = chunk(words(75));
  assert.equal(full.chunks.length, 1);
  assert.deepEqual(full.chunks[0].tokenIds, [BOS, ...wordIds(75), EOS]);
  assert.equal(full.tokenCount, 75);

  const over = chunk(words(76));
  assert.equal(over.chunks.length, 2);
  assert.deepEqual(body(over.chunks[0].tokenIds), wordIds(75));
  assert.deepEqual(body(over.chunks[1].tokenIds), wordIds(1, 76));
  assert.equal(over.tokenCount, 76);
  assert.equal(chunk(words(151)).chunks.length, 3);
});

test('comma backtracking moves the words after a comma near the edge into the next chunk', () => {
  const text = `${words(70)}, ${words(10, 71)}`;
  const { chunks, tokenCount } = chunk(text);
  assert.deepEqual(body(chunks[0].tokenIds), [...wordIds(70), COMMA]);
  assert.deepEqual(body(chunks[1].tokenIds), wordIds(10, 71));
  // A1111 counts the first chunk as a full 75.
  assert.equal(tokenCount, 85);

  // More than 20 tokens back: cut at 75.
  const far = chunk(`${words(50)}, ${words(30, 51)}`);
  assert.deepEqual(body(far.chunks[0].tokenIds), [...wordIds(50), COMMA, ...wordIds(24, 51)]);
  // Exactly 20 back still moves, 21 does not.
  const edge = chunk(`${words(55)}, ${words(30, 56)}`);
  assert.deepEqual(body(edge.chunks[0].tokenIds), [...wordIds(55), COMMA]);
  const past = chunk(`${words(54)}, ${words(30, 55)}`);
  assert.equal(body(past.chunks[0].tokenIds).length, 75);
  // Turned off.
  const off = chunk(text, { commaPaddingBacktrack: 0 });
  assert.deepEqual(body(off.chunks[0].tokenIds), [...wordIds(70), COMMA, ...wordIds(4, 71)]);
});

test('a comma as the 76th token opens the next chunk and does not count for backtracking', () => {
  const { chunks } = chunk(`${words(75)}, ${words(80, 76)}`);
  assert.deepEqual(body(chunks[1].tokenIds), [COMMA, ...wordIds(74, 76)]);
  assert.deepEqual(body(chunks[2].tokenIds), wordIds(6, 150));
});

test('the comma id comes from the tokenizer when it names one', () => {
  const withId = { ...tokenizer, commaTokenId: 1070 };
  const { chunks } = chunkSegments(parsePromptAttention(words(80)), withId);
  assert.deepEqual(body(chunks[0].tokenIds), wordIds(70));
});

test('BREAK closes the chunk, even an empty one; a trailing BREAK adds nothing', () => {
  const two = chunk('w1 w2 BREAK w3');
  assert.equal(two.chunks.length, 2);
  assert.deepEqual(body(two.chunks[0].tokenIds), wordIds(2));
  assert.deepEqual(body(two.chunks[1].tokenIds), wordIds(1, 3));
  assert.equal(two.tokenCount, 76);

  const leading = chunk('BREAK w1');
  assert.deepEqual(leading.chunks[0].tokenIds, emptyChunk(tokenizer).tokenIds);
  assert.equal(chunk('w1 BREAK').chunks.length, 1);
  assert.equal(chunk('w1 BREAK BREAK w2').chunks.length, 3);
  assert.equal(chunk(`${words(75)} BREAK w76`).chunks.length, 2);
});

test('each token carries the weight of its segment; start, end and padding weigh 1', () => {
  const { chunks } = chunk('w1 (w2 w3) [w4] (w5:0.5)');
  assert.deepEqual(chunks[0].weights.slice(0, 8), [1, 1, 1.1, 1.1, 1 / 1.1, 0.5, 1, 1]);
  assert.ok(isWeighted(chunks[0]));
  assert.equal(chunk('').chunks.length, 1);
  assert.equal(chunk('').tokenCount, 0);
});

test('embeddings: several vectors for one word, kept in one chunk, weighted, located', () => {
  const EMB = tokenizer.tokenize('emb')[0];
  const findEmbedding: FindEmbedding = (tokens, position) =>
    tokens[position] === EMB ? { name: 'emb', tokenIds: [60001, 60002, 60003], tokenLength: 1 } : undefined;

  const { chunks } = chunk('w1 (emb) w2', { findEmbedding });
  assert.deepEqual(body(chunks[0].tokenIds), [1001, 60001, 60002, 60003, 1002]);
  assert.deepEqual(chunks[0].weights.slice(0, 6), [1, 1, 1.1, 1.1, 1.1, 1]);
  assert.deepEqual(chunks[0].embeddings, [{ offset: 2, name: 'emb' }]);

  // Three vectors do not fit after 73 tokens: the embedding starts the next chunk.
  const edge = chunk(`${words(73)} emb`, { findEmbedding });
  assert.deepEqual(body(edge.chunks[0].tokenIds), wordIds(73));
  assert.deepEqual(edge.chunks[1].embeddings, [{ offset: 1, name: 'emb' }]);

  // Moved by comma backtracking, the embedding's location moves with it.
  const moved = chunk(`${words(70)}, w71 emb w72`, { findEmbedding });
  assert.deepEqual(body(moved.chunks[1].tokenIds), [1071, 60001, 60002, 60003, 1072]);
  assert.deepEqual(moved.chunks[0].embeddings, []);
  assert.deepEqual(moved.chunks[1].embeddings, [{ offset: 2, name: 'emb' }]);
});

test('prompts are padded with empty chunks to the same count', () => {
  const long = chunk(words(100)).chunks;
  const short = chunk('w1').chunks;
  const [a, b] = padToSameChunkCount([long, short], tokenizer);
  assert.equal(a.length, 2);
  assert.equal(b.length, 2);
  assert.deepEqual(b[0], short[0]);
  assert.deepEqual(b[1], emptyChunk(tokenizer));
  assert.deepEqual(emptyChunk(tokenizer).tokenIds, [BOS, ...new Array(76).fill(EOS)]);
});
