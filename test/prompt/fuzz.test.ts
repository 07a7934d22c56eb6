import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CHUNK_LENGTH } from '../../src/diffusion/prompt/chunks.ts';
import { extractLoraTags } from '../../src/diffusion/prompt/lora-tags.ts';
import { isBreak, parsePromptAttention, WEIGHT_LIMIT } from '../../src/diffusion/prompt/parse.ts';
import { preparePrompts } from '../../src/diffusion/prompt/prepare.ts';
import { conditioningPlan, promptSchedule } from '../../src/diffusion/prompt/schedule.ts';
import { fakeTokenizer } from './fake-tokenizer.ts';

const ATOMS = ['(', ')', '[', ']', ':', '|', '\\', ' ', '\n', 'a', 'cat', ',', '0', '1', '.', '5', '-', 'e', '::', ':0.5]', ':1.2)', 'BREAK', ' BREAK ', '<lora:', '<lora:x:0.5>', '>', '<', '\\(', '\\]'];

function randomPrompts(count: number, seed: number, atoms = ATOMS): string[] {
  let s = seed;
  const rnd = (n: number) => (s = (s * 48271) % 2147483647) % n;
  return Array.from({ length: count }, () => Array.from({ length: rnd(40) }, () => atoms[rnd(atoms.length)]).join(''));
}

test('any string parses without throwing; weights are finite and within the limit', () => {
  for (const text of randomPrompts(3000, 1)) {
    for (const segment of parsePromptAttention(text)) {
      assert.ok(Number.isFinite(segment.weight) && Math.abs(segment.weight) <= WEIGHT_LIMIT, JSON.stringify(text));
    }
    const schedule = promptSchedule(text, 7);
    assert.equal(schedule[schedule.length - 1].endAtStep, 7);
    assert.equal(conditioningPlan(text, 7).textIndexAtStep.length, 7);
    const { prompt, invalid } = extractLoraTags(text);
    assert.ok(prompt.length <= text.length && invalid.every((tag) => text.includes(tag)));
  }
});

test('without minus signs every weight but the BREAK marker is positive or an explicit zero', () => {
  for (const text of randomPrompts(2000, 2, ATOMS.filter((a) => !a.includes('-')))) {
    for (const segment of parsePromptAttention(text)) {
      if (isBreak(segment)) continue;
      assert.ok(segment.weight > 0 || (segment.weight === 0 && /:[\s.0]*\)/.test(text)), JSON.stringify(text));
    }
  }
});

test('every prepared chunk has 77 ids and finite weights', () => {
  const tokenizer = fakeTokenizer();
  for (const prompt of randomPrompts(500, 3)) {
    let prepared;
    try {
      prepared = preparePrompts({ prompt, negativePrompt: prompt, steps: 5, syntax: 'A1111', tokenizer });
    } catch (e) {
      assert.equal((e as { code?: string }).code, 'BAD_USER_INPUT', JSON.stringify(prompt));
      continue;
    }
    for (const text of [...prepared.positive.texts, ...prepared.negative.texts]) {
      assert.equal(text.chunks.length, prepared.chunkCount);
      for (const chunk of text.chunks) {
        assert.equal(chunk.tokenIds.length, CHUNK_LENGTH + 2);
        assert.ok(chunk.weights.every(Number.isFinite));
      }
    }
  }
});

// Its speed is `npm run bench -- cpu`'s.
test('deep nesting parses without exhausting the stack', () => {
  const n = 5000;
  // Nested constructs with text at every level, up to the engine's 10,000-character prompt limit:
  // A1111's weighting is quadratic there (each closing bracket reweights what it encloses).
  const m = 1666;
  const cases = [
    '('.repeat(n) + 'a' + ')'.repeat(n),
    '['.repeat(n) + 'a' + ']'.repeat(n),
    '['.repeat(n) + 'a:3' + ']'.repeat(n),
    '['.repeat(n) + 'a|b' + ']'.repeat(n),
    '(['.repeat(n) + 'a',
    '\\('.repeat(n) + ')'.repeat(n),
    '[a:'.repeat(m) + 'b' + ':3]'.repeat(m),
    '[a|'.repeat(m) + 'b' + ']'.repeat(m),
    '(a'.repeat(m) + ')'.repeat(m),
    '[x:'.repeat(m),
  ];
  for (const text of cases) {
    const segments = parsePromptAttention(text);
    const schedule = promptSchedule(text, 20);
    assert.ok(segments.every((s) => Number.isFinite(s.weight)));
    assert.ok(schedule.length >= 1);
  }
  // Nested edits all resolve: up to step 3 the outermost [a:…:3] shows `a`.
  assert.equal(promptSchedule('[a:'.repeat(m) + 'b' + ':3]'.repeat(m), 20)[0].text, 'a');
  assert.equal(promptSchedule('[a:'.repeat(3) + 'b' + ':3]'.repeat(3), 20)[1].text, 'b');
});
