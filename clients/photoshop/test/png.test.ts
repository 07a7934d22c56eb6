import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encode } from 'fast-png';
import { pngToRgba, rgbaToPng } from '../src/image/png.ts';

function pattern(width: number, height: number): Uint8Array {
  const data = new Uint8Array(width * height * 4);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + (i >> 2) * 11) & 255;
  return data;
}

test('RGBA round-trips through PNG exactly, at odd sizes', () => {
  for (const [width, height] of [[1, 1], [7, 3], [65, 33]]) {
    const image = { width, height, data: pattern(width, height) };
    const png = rgbaToPng(image);
    assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], 'a PNG signature');
    assert.deepEqual(pngToRgba(png), image);
  }
});

test('grey, grey+alpha, RGB, 16-bit and palette PNGs decode to 8-bit RGBA', () => {
  const grey = pngToRgba(encode({ width: 2, height: 1, data: new Uint8Array([10, 200]), channels: 1 }));
  assert.deepEqual([...grey.data], [10, 10, 10, 255, 200, 200, 200, 255]);
  const greyAlpha = pngToRgba(encode({ width: 1, height: 1, data: new Uint8Array([40, 128]), channels: 2 }));
  assert.deepEqual([...greyAlpha.data], [40, 40, 40, 128]);
  const rgb = pngToRgba(encode({ width: 1, height: 1, data: new Uint8Array([1, 2, 3]), channels: 3 }));
  assert.deepEqual([...rgb.data], [1, 2, 3, 255]);
  const deep = pngToRgba(encode({ width: 1, height: 1, data: new Uint16Array([65535, 0, 257 * 100]), channels: 3, depth: 16 }));
  assert.deepEqual([...deep.data], [255, 0, 100, 255]);
  const indexed = pngToRgba(
    encode({ width: 3, height: 1, data: new Uint8Array([1, 0, 1]), channels: 1, depth: 8, palette: [[255, 0, 0], [0, 0, 255]] }),
  );
  assert.deepEqual([...indexed.data], [0, 0, 255, 255, 255, 0, 0, 255, 0, 0, 255, 255]);
});
