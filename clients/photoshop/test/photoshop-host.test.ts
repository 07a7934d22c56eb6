import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HostError, unsupportedReason } from '../src/host/host.ts';
import { PhotoshopHost } from '../src/host/photoshop.ts';
import { createRgba } from '../src/image/rgba.ts';
import { FakePhotoshop } from './fake-photoshop.ts';

function setup() {
  const ps = new FakePhotoshop();
  return { ps, host: new PhotoshopHost(ps.module()) };
}

test('the active document in pixels, with its resolution, mode and depth', async () => {
  const { ps, host } = setup();
  assert.equal(await host.activeDocument(), null);
  const doc = ps.addDocument('page', 1240, 1748, 300);
  doc.bitsPerChannel = 'bitDepth16';
  doc.mode = 'CMYKColorMode';
  const info = (await host.activeDocument())!;
  assert.deepEqual(info, { id: doc.id, title: 'page', width: 1240, height: 1748, resolution: 300, mode: 'CMYK', bitsPerChannel: 16 });
  assert.equal(unsupportedReason(info), null);
  assert.match(unsupportedReason({ ...info, mode: 'Indexed' })!, /Indexed Color mode.*Image › Mode › RGB Color/);
});

test('read re-pads what getPixels trimmed, and returns RGBA for an opaque (RGB) result', async () => {
  const { ps, host } = setup();
  // Pixels only in x 4–7: getPixels trims the rest away.
  const doc = ps.addDocument('sparse', 10, 6, 72, (x, y) => (x >= 4 && x < 8 ? [x * 10, y * 10, 7, 255] : [0, 0, 0, 0]));
  const image = await host.read(doc.id, { left: 2, top: 1, width: 8, height: 4 });
  assert.equal(image.width, 8);
  assert.equal(image.height, 4);
  const pixel = (x: number, y: number) => [...image.data.subarray((y * 8 + x) * 4, (y * 8 + x) * 4 + 4)];
  assert.deepEqual(pixel(0, 0), [0, 0, 0, 0], 'transparent where the document has no pixels');
  assert.deepEqual(pixel(2, 0), [40, 10, 7, 255], 'document (4, 1) lands at (2, 0)');
  assert.deepEqual(pixel(5, 3), [70, 40, 7, 255]);
  assert.deepEqual(pixel(7, 3), [0, 0, 0, 0]);
  const opaque = ps.addDocument('opaque', 4, 4);
  assert.deepEqual([...(await host.read(opaque.id, { left: 1, top: 1, width: 2, height: 2 })).data.subarray(0, 4)], [128, 128, 128, 255]);
  assert.ok(ps.images.every((i) => i.disposed), 'every image data disposed');
});

test('the selection is re-padded to its bounds when it reaches past the canvas', async () => {
  const { ps, host } = setup();
  const doc = ps.addDocument('edge', 10, 10);
  assert.equal(await host.selection(doc.id), null);
  doc.selectionMask = { bounds: { left: 6, top: -2, right: 12, bottom: 4 }, data: new Uint8Array(36).fill(255) };
  const selection = (await host.selection(doc.id))!;
  assert.deepEqual(selection.bounds, { left: 6, top: -2, width: 6, height: 6 });
  // Rows above the canvas and columns right of it come back 0: the host knows nothing of them.
  assert.equal(selection.mask[0], 0);
  assert.equal(selection.mask[2 * 6], 255);
  assert.equal(selection.mask[2 * 6 + 4], 0);
  assert.ok(ps.images.every((i) => i.disposed));
});

test('place makes masked layers, grouped, as one undo step, in the document it is given', async () => {
  const { ps, host } = setup();
  const target = ps.addDocument('target', 300, 200, 300);
  ps.addDocument('other', 50, 50); // The user switched documents meanwhile.
  const image = createRgba(40, 30);
  image.data.fill(200);
  const mask = { bounds: { left: 10, top: 20, width: 40, height: 30 }, mask: new Uint8Array(1200).fill(255) };
  await host.place(
    target.id,
    [
      { name: 'a cat · 1', image, bounds: { left: 10, top: 20, width: 40, height: 30 }, mask },
      { name: 'a cat · 2', image, bounds: { left: 10, top: 20, width: 40, height: 30 }, mask },
    ],
    'a cat',
  );
  assert.deepEqual(target.history, ['a cat'], 'one history state');
  assert.deepEqual(target.layers.map((l) => [l.name, l.group]), [['a cat · 1', 'a cat'], ['a cat · 2', 'a cat']]);
  assert.deepEqual(target.layers[0].pixels!.bounds, { left: 10, top: 20, right: 50, bottom: 50 });
  assert.deepEqual(target.layers[0].mask!.bounds, { left: 10, top: 20, right: 50, bottom: 50 });
  assert.equal(ps.documents[1].layers.length, 0);
  assert.ok(ps.images.every((i) => i.disposed));
});

test('writing outside a modal scope fails in the fake, as in Photoshop (the fake can fail)', async () => {
  const { ps } = setup();
  const doc = ps.addDocument('d', 4, 4);
  await assert.rejects(doc.createPixelLayer({ name: 'x' }), /only available in a modal scope/);
});

test('another plugin holding the modal state, and a user cancel, give messages; a cancel leaves nothing', async () => {
  const { ps, host } = setup();
  const doc = ps.addDocument('d', 8, 8);
  let release!: () => void;
  ps.hold = new Promise((resolve) => (release = resolve));
  const running = host.read(doc.id, { left: 0, top: 0, width: 2, height: 2 });
  await assert.rejects(host.read(doc.id, { left: 0, top: 0, width: 2, height: 2 }), (e: Error) => e instanceof HostError && /busy with another plugin/.test(e.message));
  ps.hold = null;
  release();
  await running;

  ps.cancelNext = true;
  await assert.rejects(host.place(doc.id, [{ name: 'x', image: createRgba(2, 2), bounds: { left: 0, top: 0, width: 2, height: 2 } }]), /canceled in Photoshop/);
  assert.deepEqual(doc.layers, [], 'the history suspension was dropped');
  assert.deepEqual(doc.history, []);
  await assert.rejects(host.place(999, []), /has been closed/);
});
