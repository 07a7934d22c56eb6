import assert from 'node:assert/strict';
import { test } from 'node:test';
import { extractLoraTags } from '../../src/diffusion/prompt/lora-tags.ts';

test('LoRA tags are removed from the prompt and returned with their weights', () => {
  const r = extractLoraTags('a cat <lora:style:0.8>, <lora:detail> on a mat<lora:x: -0.5 >');
  assert.equal(r.prompt, 'a cat ,  on a mat');
  assert.deepEqual(r.loras, [
    { name: 'style', weight: 0.8, unetWeight: 0.8 },
    { name: 'detail', weight: 1, unetWeight: 1 },
    { name: 'x', weight: -0.5, unetWeight: -0.5 },
  ]);
  assert.deepEqual(r.invalid, []);
});

test('separate text-encoder and UNet multipliers, positional or named, and the lyco alias', () => {
  assert.deepEqual(extractLoraTags('<lora:a:0.5:0.25>').loras, [{ name: 'a', weight: 0.5, unetWeight: 0.25 }]);
  assert.deepEqual(extractLoraTags('<lora:a:unet=0.3>').loras, [{ name: 'a', weight: 1, unetWeight: 0.3 }]);
  assert.deepEqual(extractLoraTags('<lora:a:te=0.2>').loras, [{ name: 'a', weight: 0.2, unetWeight: 0.2 }]);
  assert.deepEqual(extractLoraTags('<lora:a:0.9:te=0.2:unet=0.4>').loras, [{ name: 'a', weight: 0.2, unetWeight: 0.4 }]);
  assert.deepEqual(extractLoraTags('<lora:a:1:1:dyn=8>').loras, [{ name: 'a', weight: 1, unetWeight: 1 }]);
  assert.deepEqual(extractLoraTags('<lyco:b:.5>').loras, [{ name: 'b', weight: 0.5, unetWeight: 0.5 }]);
  assert.deepEqual(extractLoraTags('<lora:a:1.>').loras, [{ name: 'a', weight: 1, unetWeight: 1 }]);
});

test('other extra-network kinds and malformed tags stay in the text', () => {
  const text = '<hypernet:h:1> <LORA:a:1> <lora:> <lora a:1> lora:a:1>';
  assert.deepEqual(extractLoraTags(text), { prompt: text, loras: [], invalid: [] });
});

test('tags whose weights are not numbers are reported and removed', () => {
  const r = extractLoraTags('x <lora:a:abc> <lora:b:1:inf> <lora::1> <lora:te=1> y');
  assert.equal(r.prompt, 'x     y');
  assert.deepEqual(r.loras, []);
  assert.deepEqual(r.invalid, ['<lora:a:abc>', '<lora:b:1:inf>', '<lora::1>', '<lora:te=1>']);
});
