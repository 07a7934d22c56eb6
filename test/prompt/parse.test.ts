import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BREAK_SEGMENT, isBreak, parsePromptAttention, WEIGHT_LIMIT } from '../../src/diffusion/prompt/parse.ts';

const parse = (text: string) => parsePromptAttention(text).map((s) => [s.text, s.weight]);

test("A1111's documented examples (parse_prompt_attention doctests)", () => {
  assert.deepEqual(parse('normal text'), [['normal text', 1]]);
  assert.deepEqual(parse('an (important) word'), [['an ', 1], ['important', 1.1], [' word', 1]]);
  assert.deepEqual(parse('(unbalanced'), [['unbalanced', 1.1]]);
  assert.deepEqual(parse('\\(literal\\]'), [['(literal]', 1]]);
  assert.deepEqual(parse('(unnecessary)(parens)'), [['unnecessaryparens', 1.1]]);
  // Exact floats: the products are taken in A1111's order.
  assert.deepEqual(parse('a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).'), [
    ['a ', 1],
    ['house', 1.5730000000000004],
    [' ', 1.1],
    ['on', 1],
    [' a ', 1.1],
    ['hill', 0.55],
    [', sun, ', 1.1],
    ['sky', 1.4641000000000006],
    ['.', 1.1],
  ]);
});

test('square brackets divide by 1.1, nesting multiplies, explicit weights allow spaces and signs', () => {
  assert.deepEqual(parse('[a]'), [['a', 1 / 1.1]]);
  assert.deepEqual(parse('[[a]]'), [['a', 1 / 1.1 / 1.1]]);
  assert.deepEqual(parse('([a])'), [['a', (1 / 1.1) * 1.1]]);
  assert.deepEqual(parse('(a: 1.5 )'), [['a', 1.5]]);
  assert.deepEqual(parse('(a:-0.5)'), [['a', -0.5]]);
  assert.deepEqual(parse('(a:.5)'), [['a', 0.5]]);
  assert.deepEqual(parse('((a:2):3)'), [['a', 6]]);
});

test('escapes, lone backslashes and stray closers are text as in A1111', () => {
  assert.deepEqual(parse('\\\\'), [['\\', 1]]);
  assert.deepEqual(parse('a\\b'), [['ab', 1]]);
  assert.deepEqual(parse('a) b]'), [['a) b]', 1]]);
  assert.deepEqual(parse('a:1.2) b'), [['a:1.2) b', 1]]);
  assert.deepEqual(parse('a [b (c'), [['a ', 1], ['b ', 1 / 1.1], ['c', 1.1 * (1 / 1.1)]]);
  // A square bracket does not close a round one.
  assert.deepEqual(parse('(a]'), [['a]', 1.1]]);
  // A dangling backslash leaves an empty segment behind, weighted like its place.
  assert.deepEqual(parse('[\\'), [['', 1 / 1.1]]);
  assert.deepEqual(parse(''), [['', 1]]);
});

test('an explicit weight that is not a number is text (A1111 raises)', () => {
  assert.deepEqual(parse('(a:1.2.3)'), [['a:1.2.3', 1.1]]);
  assert.deepEqual(parse('(a:.)'), [['a:.', 1.1]]);
});

test('BREAK is its own segment with weight -1, never merged or weighted', () => {
  assert.deepEqual(parse('a BREAK b'), [['a', 1], ['BREAK', -1], ['b', 1]]);
  assert.deepEqual(parse('a\nBREAK\tb'), [['a', 1], ['BREAK', -1], ['b', 1]]);
  assert.deepEqual(parse('aBREAK BREAKing BREAK_ Break'), [['aBREAK BREAKing BREAK_ Break', 1]]);
  assert.deepEqual(parse('BREAK BREAK'), [['', 1], ['BREAK', -1], ['', 1], ['BREAK', -1], ['', 1]]);
  // A1111 would weight the marker to -1.1 and then encode the word "break"; here it still breaks.
  assert.deepEqual(parse('(a BREAK b)'), [['a', 1.1], ['BREAK', -1], ['b', 1.1]]);
  // Neighbours of weight -1 do not absorb the marker.
  assert.deepEqual(parse('(a:-1) BREAK (b:-1)'), [['a', -1], ['', 1], ['BREAK', -1], ['', 1], ['b', -1]]);
  assert.ok(isBreak(parsePromptAttention('x BREAK y')[1]));
  assert.deepEqual(BREAK_SEGMENT, { text: 'BREAK', weight: -1 });
});

test('weights are clamped to the limit instead of overflowing', () => {
  assert.deepEqual(parse('(a:5000)'), [['a', WEIGHT_LIMIT]]);
  assert.deepEqual(parse('(a:-5000)'), [['a', -WEIGHT_LIMIT]]);
  assert.deepEqual(parse(`(a:${'9'.repeat(400)})`), [['a', WEIGHT_LIMIT]]);
  const deep = parse('('.repeat(200) + 'a');
  assert.deepEqual(deep, [['a', WEIGHT_LIMIT]]);
});
