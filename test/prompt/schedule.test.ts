import assert from 'node:assert/strict';
import { test } from 'node:test';
import { conditioningPlan, promptSchedule } from '../../src/diffusion/prompt/schedule.ts';

const g = (text: string, steps = 10) => promptSchedule(text, steps).map((e) => [e.endAtStep, e.text]);
const alternating = (texts: string[], steps = 10) => Array.from({ length: steps }, (_, i) => [i + 1, texts[i % texts.length]]);

test("A1111's documented examples (get_learned_conditioning_prompt_schedules doctests)", () => {
  assert.deepEqual(g('test'), [[10, 'test']]);
  assert.deepEqual(g('a [b:3]'), [[3, 'a '], [10, 'a b']]);
  assert.deepEqual(g('a [b: 3]'), [[3, 'a '], [10, 'a b']]);
  assert.deepEqual(g('a [[[b]]:2]'), [[2, 'a '], [10, 'a [[b]]']]);
  assert.deepEqual(g('[(a:2):3]'), [[3, ''], [10, '(a:2)']]);
  assert.deepEqual(g('a [b : c : 1] d'), [[1, 'a b  d'], [10, 'a  c  d']]);
  assert.deepEqual(g('a[b:[c:d:2]:1]e'), [[1, 'abe'], [2, 'ace'], [10, 'ade']]);
  assert.deepEqual(g('a [unbalanced'), [[10, 'a [unbalanced']]);
  assert.deepEqual(g('a [b:.5] c'), [[5, 'a  c'], [10, 'a b c']]);
  // The doctest still says [[5, 'a  c'], [10, 'a {b|d{ c']], written before `|` left the grammar's
  // plain text; the current grammar has no parse for it, so A1111 returns the prompt unchanged.
  assert.deepEqual(g('a [{b|d{:.5] c'), [[10, 'a [{b|d{:.5] c']]);
  assert.deepEqual(g('((a][:b:c [d:3]'), [[3, '((a][:b:c '], [10, '((a][:b:c d']]);
  assert.deepEqual(g('[a|(b:1.1)]'), alternating(['a', '(b:1.1)']));
  assert.deepEqual(g('[fe|]male'), alternating(['female', 'male']));
  assert.deepEqual(g('[fe|||]male'), alternating(['female', 'male', 'male', 'male']));
});

test('a number with a decimal point is a fraction of the steps, one without is a step', () => {
  assert.deepEqual(g('[a:b:0.3]'), [[3, 'a'], [10, 'b']]);
  assert.deepEqual(g('[a:b:0.3]', 20), [[6, 'a'], [20, 'b']]);
  assert.deepEqual(g('[a:b:3]', 20), [[3, 'a'], [20, 'b']]);
  // 1.0 and 1.5 are fractions too (current master): the switch never happens within the steps.
  assert.deepEqual(g('a [b:1.0] c'), [[10, 'a  c']]);
  assert.deepEqual(g('a [b:1.5] c'), [[10, 'a  c']]);
  assert.deepEqual(g('[a:b:12]'), [[10, 'a']]);
  // Zero, negative and truncated-to-zero values switch before the first step.
  assert.deepEqual(g('a [b:c:0]'), [[10, 'a c']]);
  assert.deepEqual(g('a [b:c:-2]'), [[10, 'a c']]);
  assert.deepEqual(g('[a:b:2e-1]'), [[10, 'b']]);
  assert.deepEqual(g('[a:b:1e400]'), [[10, 'a']]);
  assert.deepEqual(g('[a: 3 ]'), [[3, ''], [10, 'a']]);
  assert.deepEqual(g('[a::3]'), [[3, 'a'], [10, '']]);
});

test('nesting, emphasis inside edits and edits inside emphasis', () => {
  assert.deepEqual(g('(a [b:3])'), [[3, '(a )'], [10, '(a b)']]);
  assert.deepEqual(g('(a:[b:2]) x'), [[2, '(a:) x'], [10, '(a:b) x']]);
  assert.deepEqual(g('[[a:2]:3]'), [[2, ''], [3, ''], [10, 'a']]);
  assert.deepEqual(g('[a|[b:c:2]]'), [[1, 'a'], [2, 'b'], [3, 'a'], [4, 'c'], [5, 'a'], [6, 'c'], [7, 'a'], [8, 'c'], [9, 'a'], [10, 'c']]);
  assert.deepEqual(g('[a\\|b:3]'), [[3, ''], [10, 'a\\|b']]);
});

test('malformed constructs are text; a stray `|` or a dangling backslash leaves the prompt unscheduled', () => {
  assert.deepEqual(g('[a:3 x]'), [[10, '[a:3 x]']]);
  assert.deepEqual(g('[a:b:c:3]'), [[10, '[a:b:c:3]']]);
  assert.deepEqual(g('[(a|b)|c]'), [[10, '[(a|b)|c]']]);
  assert.deepEqual(g('[a:b] [c:2]'), [[2, '[a:b] '], [10, '[a:b] c']]);
  assert.deepEqual(g('a | b [c:3]'), [[10, 'a | b [c:3]']]);
  assert.deepEqual(g('[c:3] x\\'), [[10, '[c:3] x\\']]);
  assert.deepEqual(g('[c:3] x\\\ny'), [[10, '[c:3] x\\\ny']]);
  assert.deepEqual(g('[[a:3]'), [[3, '['], [10, '[a']]);
});

test('where A1111 is ambiguous (its result varies between runs), a well-formed construct wins', () => {
  assert.deepEqual(g('[a:3]]'), [[3, ']'], [10, 'a]']]);
  assert.deepEqual(g('[a:[b:2]]'), [[2, '[a:]'], [10, '[a:b]']]);
});

test('conditioningPlan keeps A1111 step lookup: step index s uses the first entry with s ≤ endAtStep', () => {
  assert.deepEqual(conditioningPlan('a [b:c:3]', 10), { texts: ['a b', 'a c'], textIndexAtStep: [0, 0, 0, 0, 1, 1, 1, 1, 1, 1] });
  assert.deepEqual(conditioningPlan('[a|b]', 6), { texts: ['a', 'b'], textIndexAtStep: [0, 0, 1, 0, 1, 0] });
  assert.deepEqual(conditioningPlan('plain', 3), { texts: ['plain'], textIndexAtStep: [0, 0, 0] });
  assert.deepEqual(conditioningPlan('[a:b:0]', 2), { texts: ['b'], textIndexAtStep: [0, 0] });
  assert.throws(() => conditioningPlan('x', 0), RangeError);
  assert.throws(() => promptSchedule('x', 2.5), RangeError);
});
