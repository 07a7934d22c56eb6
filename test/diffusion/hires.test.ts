// The latent upscalers against values torch.nn.functional.interpolate gives (align_corners=False,
// no antialiasing), and the hires size rules.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { interpolateLatents, resolveHires } from '../../src/diffusion/hires.ts';

describe('interpolateLatents', () => {
  const input = Float32Array.of(1, 2, 3, 4);
  it('bilinear: torch\'s half-pixel sampling, clamped at the edges', () => {
    // F.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=(4, 4), mode="bilinear")
    const expected = [1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4];
    assert.deepEqual([...interpolateLatents(input, [1, 1, 2, 2], 4, 4, 'bilinear')], expected);
  });
  it('nearest: floor(dst × in/out)', () => {
    assert.deepEqual([...interpolateLatents(input, [1, 1, 2, 2], 3, 4, 'nearest')], [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4]);
  });
  it('keeps images and channels apart', () => {
    const two = Float32Array.of(1, 1, 1, 1, 5, 5, 5, 5);
    assert.deepEqual([...interpolateLatents(two, [2, 1, 2, 2], 3, 3, 'bilinear')], [...Array(9).fill(1), ...Array(9).fill(5)]);
  });
});

describe('resolveHires', () => {
  const base = { width: 96, height: 64, steps: 20, factor: 8, canEncode: true, model: { id: 'sd1', vaeScaleFactor: 8, attentionLevels: [{ level: 0, heads: 8 }] } };
  it('scales, rounding down to the VAE scale factor, and keeps the aspect ratio for a single side', () => {
    assert.deepEqual(resolveHires({ scale: 1.5 }, base, () => false), { width: 144, height: 96, scale: 1.5, upscaler: 'latent', steps: 20, strength: 0.7 });
    assert.deepEqual(resolveHires({ scale: 1.3 }, base, () => false).width, 120);
    assert.deepEqual(resolveHires({ height: 480 }, base, () => false).width, 720);
    assert.deepEqual(resolveHires({ width: 200, upscaler: 'onnx-x', steps: 3, strength: 0.5 }, base, (id) => id === 'onnx-x'), { width: 200, height: 128, upscaler: 'onnx-x', steps: 3, strength: 0.5 });
  });
  it("the hires size is within the model's pixel limit: SD 1.x's 768×768, SDXL's 1024×1024", () => {
    const square = { ...base, width: 512, height: 512 };
    assert.throws(() => resolveHires({ width: 776, height: 768 }, square, () => false), /hires: 776×768 is more than 589824 pixels, model sd1's limit: one image of it needs 5\.4 GiB/);
    const sdxl = { ...square, model: { id: 'xl', vaeScaleFactor: 8, attentionLevels: [{ level: 1, heads: 10 }, { level: 2, heads: 20 }] } };
    assert.equal(resolveHires({ scale: 2 }, sdxl, () => false).width, 1024);
    assert.throws(() => resolveHires({ width: 1032, height: 1024 }, sdxl, () => false), /hires: 1032×1024 is more than 1048576 pixels, model xl's limit: no model goes beyond 1048576 pixels/);
  });
});
