// torch.Generator("cpu") and torch.randn reproduced (ATen's MT19937 and CPU normal kernels), so that a seed
// gives the same latents and noise as diffusers does.
import { randomInt } from 'node:crypto';

const STATE_SIZE = 624;
const SHIFT_SIZE = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;
const TWO_POW_32 = 2 ** 32;
const TWO_POW_MINUS_24 = 2 ** -24;
const TWO_POW_MINUS_53 = 2 ** -53;
// The vectorised kernel multiplies in float32 by 2π rounded to float32; the rounding of θ is visible in the output.
const TWO_PI_F32 = Math.fround(2 * Math.PI);

/** A PyTorch CPU generator after `manual_seed(seed)`; successive `randn` calls continue its stream as torch does. */
export class TorchGenerator {
  readonly #state = new Uint32Array(STATE_SIZE);
  #next = STATE_SIZE;
  /** Box-Muller's second value left over by the scalar path (CPUGeneratorImpl's next_double_normal_sample). */
  #cachedNormal: number | null = null;

  constructor(seed: number | bigint) {
    const state = this.#state;
    // at::mt19937 keeps only the low 32 bits of the 64-bit seed.
    state[0] = low32(seed);
    for (let j = 1; j < STATE_SIZE; j++) {
      const prev = state[j - 1];
      state[j] = Math.imul(1812433253, prev ^ (prev >>> 30)) + j;
    }
  }

  /** torch.randn(shape, generator=this) for a tensor with `count` elements, float32. */
  randn(count: number): Float32Array {
    if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`randn: invalid element count ${count}`);
    const out = new Float32Array(count);
    // normal_kernel: contiguous float tensors of 16+ elements take normal_fill, smaller ones the scalar sampler.
    if (count >= 16) {
      this.#normalFill(out);
    } else {
      for (let i = 0; i < count; i++) out[i] = this.#nextDoubleNormal();
    }
    return out;
  }

  #nextUint32(): number {
    if (this.#next >= STATE_SIZE) this.#twist();
    return temper(this.#state[this.#next++]);
  }

  #twist(): void {
    const state = this.#state;
    let k = 0;
    for (; k < STATE_SIZE - SHIFT_SIZE; k++) {
      const y = (state[k] & UPPER_MASK) | (state[k + 1] & LOWER_MASK);
      state[k] = state[k + SHIFT_SIZE] ^ (y >>> 1) ^ (state[k + 1] & 1 ? MATRIX_A : 0);
    }
    for (; k < STATE_SIZE - 1; k++) {
      const y = (state[k] & UPPER_MASK) | (state[k + 1] & LOWER_MASK);
      state[k] = state[k + SHIFT_SIZE - STATE_SIZE] ^ (y >>> 1) ^ (state[k + 1] & 1 ? MATRIX_A : 0);
    }
    const y = (state[k] & UPPER_MASK) | (state[0] & LOWER_MASK);
    state[k] = state[SHIFT_SIZE - 1] ^ (y >>> 1) ^ (state[0] & 1 ? MATRIX_A : 0);
    this.#next = 0;
  }

  /** uniform_real_distribution<float> into data[start..end): 24 bits of one 32-bit draw each, in [0, 1). */
  #fillFloatUniforms(data: Float32Array, start: number, end: number): void {
    const state = this.#state;
    for (let i = start; i < end; ) {
      if (this.#next >= STATE_SIZE) this.#twist();
      const stop = Math.min(end, i + STATE_SIZE - this.#next);
      let next = this.#next;
      for (; i < stop; i++) data[i] = (temper(state[next++]) & 0xffffff) * TWO_POW_MINUS_24;
      this.#next = next;
    }
  }

  /** uniform_real_distribution<double>: 53 bits of random64() (first draw high, second low), in [0, 1). */
  #nextDoubleUniform(): number {
    const hi = this.#nextUint32() & 0x1fffff;
    const lo = this.#nextUint32();
    return (hi * TWO_POW_32 + lo) * TWO_POW_MINUS_53;
  }

  /** at::normal_distribution<double>: one Box-Muller pair per two calls, the sine half cached in the generator. */
  #nextDoubleNormal(): number {
    if (this.#cachedNormal !== null) {
      const cached = this.#cachedNormal;
      this.#cachedNormal = null;
      return cached;
    }
    const u1 = this.#nextDoubleUniform();
    const u2 = this.#nextDoubleUniform();
    const radius = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = 2 * Math.PI * u1;
    this.#cachedNormal = radius * Math.sin(theta);
    return radius * Math.cos(theta);
  }

  /** normal_fill: uniforms for every element, then Box-Muller per 16; a ragged tail redoes the last 16 afresh. */
  #normalFill(data: Float32Array): void {
    const size = data.length;
    this.#fillFloatUniforms(data, 0, size);
    for (let i = 0; i + 16 <= size; i += 16) boxMuller16(data, i);
    if (size % 16 !== 0) {
      this.#fillFloatUniforms(data, size - 16, size);
      boxMuller16(data, size - 16);
    }
  }
}

// The reference torch build ran normal_fill_AVX2: Box-Muller in float32 with avx_mathfun's cephes-style log and
// sincos, compiled with FMA contraction (a product feeding only an addition becomes one fused multiply-add).
// Emulating those float32 steps makes the outputs bit-identical to the reference; double-precision
// Math.log/cos would be an ulp off in about a third of the values.
const f32 = Math.fround;
const bitsView = new Float32Array(1);
const intView = new Int32Array(bitsView.buffer);

/** normal_fill_16_AVX2: element j gives the radius (from 1 - u), element j + 8 the angle; cosine first, sine second. */
function boxMuller16(data: Float32Array, offset: number): void {
  for (let j = offset; j < offset + 8; j++) {
    const radius = f32(Math.sqrt(f32(-2 * log256(1 - data[j]))));
    sincos256(f32(TWO_PI_F32 * data[j + 8]));
    // The final fmadd(n, std = 1, mean = 0) turns a -0 (from a zero radius) into +0.
    data[j] = f32(radius * sinCos[1]) + 0;
    data[j + 8] = f32(radius * sinCos[0]) + 0;
  }
}

/** fmaf: a·b + c rounded once to float32 (a·b of two floats is exact in a double, so only a tie can go wrong). */
function fmaf(a: number, b: number, c: number): number {
  const product = a * b;
  const sum = product + c;
  const rounded = f32(sum);
  const beyond = 2 * sum - rounded;
  return f32(beyond) === beyond && rounded !== sum ? breakTie(product, c, sum, rounded, beyond) : rounded;
}

/** `sum` lies halfway between the floats `rounded` and `beyond`: the part of product + c it lost decides. */
function breakTie(product: number, c: number, sum: number, rounded: number, beyond: number): number {
  const cVirtual = sum - product;
  const residual = product - (sum - cVirtual) + (c - cVirtual);
  if (residual === 0) return rounded;
  return residual > 0 === beyond > rounded ? beyond : rounded;
}

const LOG_P = [
  7.0376836292e-2, -1.151461031e-1, 1.167699874e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
  2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1,
].map(f32);
const LOG_Q1 = f32(-2.1219444e-4);
const LOG_Q2 = f32(0.693359375);
const SQRT_HALF = f32(Math.SQRT1_2);

/** log256_ps for x in (0, 1] (Box-Muller never passes anything else, so no denormal or NaN handling). */
function log256(x: number): number {
  bitsView[0] = x;
  const bits = intView[0];
  let e = (bits >>> 23) - 126;
  intView[0] = (bits & 0x007fffff) | 0x3f000000;
  let m = bitsView[0];
  if (m < SQRT_HALF) {
    e -= 1;
    m = f32(m - 1 + m);
  } else {
    m = f32(m - 1);
  }
  const z = f32(m * m);
  let y = LOG_P[0];
  for (let i = 1; i < LOG_P.length; i++) y = fmaf(y, m, LOG_P[i]);
  // Where two products meet in one sum, the compiler fused the first one.
  y = fmaf(f32(y * m), z, f32(e * LOG_Q1));
  y = f32(y - z * 0.5);
  return fmaf(e, LOG_Q2, f32(m + y));
}

const MINUS_DP1 = f32(-0.78515625);
const MINUS_DP2 = f32(-2.4187564849853515625e-4);
const MINUS_DP3 = f32(-3.774894977445941e-8);
const SIN_P = [-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1].map(f32);
const COS_P = [2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2].map(f32);
const FOUR_OVER_PI = f32(4 / Math.PI);
const sinCos = new Float64Array(2);

/** sincos256_ps for x >= 0, into sinCos = [sin, cos] (no allocation in the hot loop). */
function sincos256(x: number): void {
  const octant = (Math.trunc(f32(x * FOUR_OVER_PI)) + 1) & ~1;
  // Cody-Waite reduction by π/4 in three parts.
  x = fmaf(octant, MINUS_DP1, x);
  x = fmaf(octant, MINUS_DP2, x);
  x = fmaf(octant, MINUS_DP3, x);
  const z = f32(x * x);
  let c = fmaf(COS_P[0], z, COS_P[1]);
  c = f32(fmaf(c, z, COS_P[2]) * z);
  c = f32(fmaf(c, z, -z * 0.5) + 1);
  let s = fmaf(SIN_P[0], z, SIN_P[1]);
  s = f32(fmaf(s, z, SIN_P[2]) * z);
  s = fmaf(s, x, x);
  const swap = (octant & 2) !== 0;
  const sin = swap ? c : s;
  const cos = swap ? s : c;
  sinCos[0] = octant & 4 ? -sin : sin;
  sinCos[1] = (octant - 2) & 4 ? cos : -cos;
}

function temper(y: number): number {
  y ^= y >>> 11;
  y ^= (y << 7) & 0x9d2c5680;
  y ^= (y << 15) & 0xefc60000;
  y ^= y >>> 18;
  return y >>> 0;
}

function low32(seed: number | bigint): number {
  if (typeof seed === 'bigint') {
    if (seed < -(2n ** 63n) || seed >= 2n ** 64n) throw new RangeError(`seed ${seed} is outside torch's 64-bit range`);
    return Number(BigInt.asUintN(32, seed));
  }
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed ${seed} is not a safe integer`);
  // Negative seeds wrap as torch's two's complement does.
  return ((seed % TWO_POW_32) + TWO_POW_32) % TWO_POW_32;
}

/** A random seed for a request that gave none: uniform integer in [0, 2^32 - 1]. */
export function randomSeed(): number {
  return randomInt(TWO_POW_32);
}
