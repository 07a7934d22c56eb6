// Reading ids (src/graphql/ids.ts): which strings are global ids, and what an argument of one type
// makes of a global id, a plain id, and the global id of another type.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GraphQLError } from 'graphql';
import { decodeNodeId, localId } from '../../src/graphql/ids.ts';

const encode = (text: string) => Buffer.from(text).toString('base64');

test('an argument takes its type\'s global id or a plain id, and refuses another type\'s global id', () => {
  assert.equal(localId('Model', encode('Model:sd15')), 'sd15');
  assert.equal(localId('Model', encode('Model:a:b')), 'a:b');
  assert.equal(localId('Model', 'sd15'), 'sd15');
  assert.equal(localId('Generation', 42), '42');
  assert.throws(() => localId('Model', encode('Image:1')), (error: GraphQLError) => {
    assert.equal(error.extensions.code, 'BAD_USER_INPUT');
    assert.equal(error.message, `"${encode('Image:1')}" is a global id of type Image, not Model`);
    return true;
  });
});

test('only the exact (canonical, padded) base64 of Typename:id is a global id; anything else is a plain id', () => {
  const unpadded = encode('Model:sd').replace(/=+$/, '');
  assert.notEqual(unpadded, encode('Model:sd'));
  for (const plain of [unpadded, 'abcd', 'Model:sd15', encode('no colon'), encode(':x'), encode('1a:x'), 'my model', '']) {
    assert.equal(localId('Model', plain), plain, plain);
    assert.throws(() => decodeNodeId(plain), { extensions: { code: 'BAD_USER_INPUT', id: plain } }, plain);
  }
  assert.deepEqual(decodeNodeId(encode('Lora:style')), { typename: 'Lora', id: 'style' });
});
