import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ClipTokenizer, type ClipTokenizerFiles } from '../../src/diffusion/tokenizer.ts';
import { loadReference, PARITY_SETS, referenceDir } from '../helpers/reference.ts';

// The byte alphabet as openai/CLIP lists it: printable Latin-1 bytes as themselves, the rest from U+0100 on.
function byteAlphabet(): string[] {
  const kept = [...range(0x21, 0x7e), ...range(0xa1, 0xac), ...range(0xae, 0xff)];
  const chars = new Map(kept.map((b) => [b, String.fromCharCode(b)]));
  let next = 0x100;
  for (let b = 0; b < 256; b++) if (!chars.has(b)) chars.set(b, String.fromCharCode(next++));
  return range(0, 255).map((b) => chars.get(b) as string);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** A fixture-sized vocabulary: the 256 byte symbols, their end-of-word forms, the merge results, the specials. */
function tinyFiles(merges: string[], overrides: Partial<ClipTokenizerFiles> = {}): ClipTokenizerFiles {
  const vocab: Record<string, number> = {};
  const add = (token: string) => {
    if (!(token in vocab)) vocab[token] = Object.keys(vocab).length;
  };
  const bytes = byteAlphabet();
  bytes.forEach(add);
  bytes.forEach((b) => add(`${b}</w>`));
  merges.forEach((merge) => add(merge.replace(' ', '')));
  add('<|startoftext|>');
  add('<|endoftext|>');
  return { vocab, merges, ...overrides };
}

const MERGES = ['c a', 'ca t</w>', 'h e', 'l l', 'he ll', 'hell o</w>', "' s</w>", 'i t</w>', '1 2</w>', 'Ã ©</w>'];

function pieces(tokenizer: ClipTokenizer, files: ClipTokenizerFiles, text: string): string[] {
  const byId = new Map(Object.entries(files.vocab).map(([token, id]) => [id, token]));
  return tokenizer.tokenize(text).map((id) => byId.get(id) ?? `#${id}`);
}

describe('ClipTokenizer on a tiny byte-level vocabulary', () => {
  const files = tinyFiles(MERGES);
  const tokenizer = new ClipTokenizer(files);

  it('applies merges within words and marks word ends', () => {
    assert.deepEqual(pieces(tokenizer, files, 'a cat hello'), ['a</w>', 'cat</w>', 'hello</w>']);
    assert.deepEqual(pieces(tokenizer, files, 'cats'), ['ca', 't', 's</w>']);
  });

  it('lowercases, collapses whitespace and splits punctuation runs from letters', () => {
    assert.deepEqual(pieces(tokenizer, files, '  Hello,\tCAT!!\n'), ['hello</w>', ',</w>', 'cat</w>', '!', '!</w>']);
  });

  it('merges by rank, every occurrence left to right', () => {
    const abFirst = tinyFiles(['a b', 'b c</w>']);
    const bcFirst = tinyFiles(['b c</w>', 'a b']);
    assert.deepEqual(pieces(new ClipTokenizer(abFirst), abFirst, 'abc'), ['ab', 'c</w>']);
    assert.deepEqual(pieces(new ClipTokenizer(bcFirst), bcFirst, 'abc'), ['a', 'bc</w>']);
    const repeated = tinyFiles(['a a']);
    assert.deepEqual(pieces(new ClipTokenizer(repeated), repeated, 'aaa'), ['aa', 'a</w>']);
  });

  it("splits contractions off and numbers into single digits, as CLIP's pattern does", () => {
    assert.deepEqual(pieces(tokenizer, files, "it's 12"), ['it</w>', "'s</w>", '1</w>', '2</w>']);
  });

  it('keeps accents as UTF-8 bytes, composing decomposed ones first', () => {
    const expected = ['ca', 'f', 'Ã©</w>'];
    assert.deepEqual(pieces(tokenizer, files, 'café'), expected);
    assert.deepEqual(pieces(tokenizer, files, 'cafe\u0301'), expected);
    assert.deepEqual(pieces(tokenizer, files, 'CAFÉ'), expected);
  });

  it('drops control and format characters and treats other spaces as spaces', () => {
    assert.deepEqual(pieces(tokenizer, files, 'c\u200bat\u0000'), ['cat</w>']);
    assert.deepEqual(pieces(tokenizer, files, 'a\u00a0cat\u3000'), ['a</w>', 'cat</w>']);
  });

  it('makes every CJK ideograph a word of its own', () => {
    const ideographs = pieces(tokenizer, files, '猫猫');
    assert.equal(ideographs.length, 6);
    assert.deepEqual(
      ideographs.map((p) => p.endsWith('</w>')),
      [false, false, true, false, false, true],
    );
    // Hangul is not in the CJK blocks: one word.
    assert.equal(pieces(tokenizer, files, '고양').filter((p) => p.endsWith('</w>')).length, 1);
  });

  it('keeps special tokens written in the text whole', () => {
    const eos = tokenizer.eosTokenId;
    assert.deepEqual(tokenizer.tokenize('!!<|endoftext|>cat'), [files.vocab['!'], files.vocab['!</w>'], eos, files.vocab['cat</w>']]);
    // Not matched case-sensitively, but lowercased CLIP's pattern and BPE cache still give the token.
    assert.deepEqual(tokenizer.tokenize('a <|ENDOFTEXT|>'), [files.vocab['a</w>'], eos]);
    assert.deepEqual(tokenizer.encode('<|startoftext|>'), [tokenizer.bosTokenId, tokenizer.bosTokenId, eos]);
  });

  it('maps pieces missing from the vocabulary to the unknown token, or fails without one', () => {
    const partial = tinyFiles([]);
    delete partial.vocab['z</w>'];
    assert.deepEqual(new ClipTokenizer(partial).tokenize('a z'), [partial.vocab['a</w>'], partial.vocab['<|endoftext|>']]);
    const noUnk = new ClipTokenizer({ ...partial, unkToken: '<unk>' });
    assert.throws(() => noUnk.tokenize('z'), /"z<\/w>" is not in the vocabulary/);
  });

  it('pads to the model length with the pad token and truncates to leave room for BOS and EOS', () => {
    const short = new ClipTokenizer({ ...files, modelMaxLength: 8 });
    const { bosTokenId: bos, eosTokenId: eos } = short;
    const a = files.vocab['a</w>'];
    const cat = files.vocab['cat</w>'];
    assert.equal(short.padTokenId, eos, 'pad falls back to EOS');
    assert.deepEqual(Array.from(short.encodePadded('a cat')), [bos, a, cat, eos, eos, eos, eos, eos]);
    assert.deepEqual(Array.from(short.encodePadded('a a a a a a a a a a')), [bos, a, a, a, a, a, a, eos]);
    assert.deepEqual(short.encode('a a a a a a a a a a').length, 12);
    assert.equal(new ClipTokenizer(files).encodePadded('').length, 77);
  });

  it("with SD 2.x's pad token '!' pads with it and keeps a written '!' whole", () => {
    const sd2 = new ClipTokenizer({ ...files, padToken: '!', modelMaxLength: 6 });
    const bang = files.vocab['!'];
    assert.equal(sd2.padTokenId, bang);
    assert.deepEqual(Array.from(sd2.encodePadded('cat!!')), [sd2.bosTokenId, files.vocab['cat</w>'], bang, bang, sd2.eosTokenId, bang]);
  });

  it('adds tokens that are then matched whole, with the next free id', () => {
    const custom = new ClipTokenizer(tinyFiles(MERGES));
    const size = Object.keys(files.vocab).length;
    const id = custom.addToken('<cat-toy>');
    assert.equal(id, size);
    assert.equal(custom.addToken('<cat-toy>'), id);
    assert.equal(custom.addToken('cat</w>'), files.vocab['cat</w>']);
    assert.deepEqual(custom.tokenize('a <cat-toy>cat'), [files.vocab['a</w>'], id, files.vocab['cat</w>']]);
    assert.equal(custom.addToken('<other>'), size + 1);
  });
});

describe('ClipTokenizer.fromFolder', () => {
  it('reads the header-prefixed merges and the special tokens, special_tokens_map.json winning', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sdql-tokenizer-'));
    try {
      const files = tinyFiles(MERGES);
      await writeFile(join(dir, 'vocab.json'), JSON.stringify(files.vocab));
      await writeFile(join(dir, 'merges.txt'), `#version: 0.2\n${MERGES.join('\n')}\n`);
      await writeFile(
        join(dir, 'tokenizer_config.json'),
        JSON.stringify({ model_max_length: 16, pad_token: '<|endoftext|>', bos_token: '<|startoftext|>' }),
      );
      await writeFile(
        join(dir, 'special_tokens_map.json'),
        JSON.stringify({
          bos_token: { content: '<|startoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
          eos_token: { content: '<|endoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
          pad_token: '!',
          unk_token: '<|endoftext|>',
        }),
      );
      const tokenizer = await ClipTokenizer.fromFolder(dir);
      assert.equal(tokenizer.modelMaxLength, 16);
      assert.equal(tokenizer.padTokenId, files.vocab['!']);
      assert.equal(tokenizer.bosTokenId, files.vocab['<|startoftext|>']);
      assert.deepEqual(tokenizer.tokenize('cat'), [files.vocab['cat</w>']], 'the first merge after the header applies');

      await rm(join(dir, 'tokenizer_config.json'));
      await rm(join(dir, 'special_tokens_map.json'));
      const bare = await ClipTokenizer.fromFolder(dir);
      assert.equal(bare.modelMaxLength, 77);
      assert.equal(bare.padTokenId, files.vocab['<|endoftext|>']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('ClipTokenizer against the reference CLIP vocabulary', () => {
  const load = () => ClipTokenizer.fromFolder(join(referenceDir, 'models/tiny-sd/tokenizer'));

  it('gives the reference token ids for every text', async () => {
    const tokenizer = await load();
    for (const { text, ids } of loadReference().tokens) assert.deepEqual(tokenizer.encode(text), ids, text);
  });

  it("gives every case's padded prompt_ids with its model's tokenizer (padded with its pad token)", async () => {
    for (const set of PARITY_SETS.map(loadReference)) {
      for (const c of set.cases) {
        const tokenizer = await ClipTokenizer.fromFolder(join(set.modelDir(c.case.model), 'tokenizer'));
        assert.deepEqual(Array.from(tokenizer.encodePadded(c.case.prompt)), c.prompt_ids, set.label(c));
      }
    }
  });

  // Its speed is `npm run bench -- cpu`'s.
  it('tokenizes a 1000-word prompt, the same once its words are cached', async () => {
    const tokenizer = await load();
    const words = 'a photo of an astronaut riding a horse on mars, highly detailed, 4k, trending on artstation'.split(' ');
    const prompt = Array.from({ length: 1000 }, (_, i) => words[i % words.length] + (i % 7 === 0 ? i : '')).join(' ');
    const expected = tokenizer.tokenize(prompt);
    assert.ok(expected.length > 1000);
    for (let i = 0; i < 3; i++) assert.deepEqual(tokenizer.tokenize(prompt), expected);
  });
});
