import assert from 'node:assert/strict';
import { LowbitFormatError } from '../../lib/errors';
import {
  bf16ToF32,
  blockCodes,
  encodeBlocks,
  checkedSize,
  dequantizeToF32,
  dtypeLayout,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  tensorByteLength,
} from '../../lib/io/dtypes';
import { seededRandom } from '../helpers/env';
import { f32Bytes, quantizationErrorBound, quantizeQ4_0, quantizeQ8_0, quantizeTQ1_0, quantizeTQ2_0 } from '../helpers/quantize';

describe('io/dtypes', () => {
  describe('layouts and sizes', () => {
    it('knows the llama.cpp block sizes', () => {
      assert.deepEqual(dtypeLayout('q8_0'), { blockElements: 32, blockBytes: 34 });
      assert.deepEqual(dtypeLayout('q4_0'), { blockElements: 32, blockBytes: 18 });
      assert.deepEqual(dtypeLayout('tq1_0'), { blockElements: 256, blockBytes: 54 });
      assert.deepEqual(dtypeLayout('tq2_0'), { blockElements: 256, blockBytes: 66 });
      assert.throws(() => dtypeLayout('lowbit'), RangeError);
    });

    it('computes tensor byte lengths', () => {
      assert.equal(tensorByteLength('f32', [3, 5], 'f'), 60);
      assert.equal(tensorByteLength('bf16', [], 'f'), 2);
      assert.equal(tensorByteLength('q4_0', [4, 64], 'f'), 4 * 2 * 18);
      assert.equal(tensorByteLength('tq1_0', [2, 512], 'f'), 2 * 2 * 54);
    });

    it('rejects rows that are not whole blocks, naming file and key', () => {
      assert.throws(() => tensorByteLength('q8_0', [4, 33], 'model.gguf', 'blk.0.attn_q.weight'), (error: unknown) => {
        assert.ok(error instanceof LowbitFormatError);
        assert.equal(error.file, 'model.gguf');
        assert.equal(error.key, 'blk.0.attn_q.weight');
        return true;
      });
    });

    it('checkedSize rejects overflow past 2^53, negative and fractional factors, and sizes past what is available', () => {
      assert.equal(checkedSize([2n ** 26n, 2n ** 26n], Number.MAX_SAFE_INTEGER, 'f'), 2 ** 52);
      assert.throws(() => checkedSize([2n ** 27n, 2n ** 27n], Number.MAX_SAFE_INTEGER, 'f', 'k'), /overflows 2\^53/);
      assert.throws(() => checkedSize([2n ** 64n - 1n, 2n ** 64n - 1n, 2n ** 64n - 1n], Number.MAX_SAFE_INTEGER, 'f'), LowbitFormatError);
      assert.throws(() => checkedSize([-1, 4], 100, 'f'), /negative/);
      assert.throws(() => checkedSize([1.5, 4], 100, 'f'), /safe integer/);
      assert.throws(() => checkedSize([10, 11], 100, 'f'), /exceeds the 100 available/);
      assert.equal(checkedSize([0, 2n ** 60n], 100, 'f'), 0);
    });
  });

  describe('half precision', () => {
    it('f16 → f32 → f16 is the identity on all 65536 patterns (NaNs stay NaN)', () => {
      for (let bits = 0; bits < 0x10000; bits++) {
        const value = f16ToF32(bits);
        if (Number.isNaN(value)) {
          assert.ok(Number.isNaN(f16ToF32(f32ToF16(value))));
          continue;
        }
        assert.equal(f32ToF16(value), bits, `pattern ${bits.toString(16)}`);
      }
    });

    it('decodes known f16 values exactly', () => {
      assert.equal(f16ToF32(0x3c00), 1);
      assert.equal(f16ToF32(0xc000), -2);
      assert.equal(f16ToF32(0x7bff), 65504);
      assert.equal(f16ToF32(0x0001), 2 ** -24);
      assert.equal(f16ToF32(0x0400), 2 ** -14);
      assert.equal(f16ToF32(0x7c00), Infinity);
      assert.ok(Object.is(f16ToF32(0x8000), -0));
    });

    it('rounds f32 → f16 to nearest even, overflowing to infinity', () => {
      assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00); // tie → even (down)
      assert.equal(f32ToF16(1 + 3 * 2 ** -11), 0x3c02); // tie → even (up)
      assert.equal(f32ToF16(1 + 2 ** -11 + 2 ** -20), 0x3c01);
      assert.equal(f32ToF16(65520), 0x7c00); // half-way past the largest half → infinity
      assert.equal(f32ToF16(65519), 0x7bff);
      assert.equal(f32ToF16(2 ** -25), 0x0000); // tie between 0 and the smallest subnormal → 0
      assert.equal(f32ToF16(3 * 2 ** -26), 0x0001);
      assert.equal(f32ToF16(-(2 ** -14) * (1 - 2 ** -11)), 0x8400); // rounds up into the normals
    });

    it('bf16 ↔ f32 is exact and rounds to nearest even', () => {
      for (let bits = 0; bits < 0x10000; bits += 7) {
        const value = bf16ToF32(bits);
        if (!Number.isNaN(value)) assert.equal(f32ToBf16(value), bits);
      }
      assert.equal(bf16ToF32(0x3f80), 1);
      assert.equal(f32ToBf16(1 + 2 ** -8), 0x3f80); // tie → even
      assert.equal(f32ToBf16(1 + 3 * 2 ** -8), 0x3f82);
      assert.ok(Number.isNaN(bf16ToF32(f32ToBf16(NaN))));
    });
  });

  describe('reference dequantisers', () => {
    const random = seededRandom(7).uniform;
    const values = Float32Array.from({ length: 512 }, () => (random() - 0.5) * 4);

    it('decode f32, f64, f16 and bf16', () => {
      assert.deepEqual(dequantizeToF32('f32', f32Bytes([1.5, -2]), 2), Float32Array.from([1.5, -2]));
      const f64 = new DataView(new ArrayBuffer(16));
      f64.setFloat64(0, 0.25, true);
      f64.setFloat64(8, -8, true);
      assert.deepEqual(dequantizeToF32('f64', new Uint8Array(f64.buffer), 2), Float32Array.from([0.25, -8]));
      assert.deepEqual(dequantizeToF32('f16', Uint8Array.from([0x00, 0x3c, 0x00, 0xc0]), 2), Float32Array.from([1, -2]));
      assert.deepEqual(dequantizeToF32('bf16', Uint8Array.from([0x80, 0x3f, 0x00, 0xc0]), 2), Float32Array.from([1, -2]));
    });

    it('q8_0: a hand-made block', () => {
      const block = new Uint8Array(34);
      new DataView(block.buffer).setUint16(0, f32ToF16(0.5), true);
      block[2] = 4;
      block[3] = 0xff; // −1
      block[33] = 0x81; // −127
      const out = dequantizeToF32('q8_0', block, 32);
      assert.equal(out[0], 2);
      assert.equal(out[1], -0.5);
      assert.equal(out[31], -63.5);
    });

    it('q4_0: low nibbles are elements 0..15, high nibbles 16..31', () => {
      const block = new Uint8Array(18);
      new DataView(block.buffer).setUint16(0, f32ToF16(2), true);
      block[2] = 0x9f; // element 0: 15 − 8 = 7; element 16: 9 − 8 = 1
      block[17] = 0x08; // element 15: 0; element 31: −8
      const out = dequantizeToF32('q4_0', block, 32);
      assert.equal(out[0], 14);
      assert.equal(out[16], 2);
      assert.equal(out[15], 0);
      assert.equal(out[31], -16);
    });

    it('q8_0 and q4_0 stay within the error bound of each block\'s own scale', () => {
      for (const [dtype, quantize, bytesPerBlock] of [
        ['q8_0', quantizeQ8_0, 34],
        ['q4_0', quantizeQ4_0, 18],
      ] as const) {
        const bytes = quantize(values);
        const out = dequantizeToF32(dtype, bytes, values.length);
        for (let i = 0; i < values.length; i++) {
          const d = Math.abs(f16ToF32(new DataView(bytes.buffer).getUint16(Math.floor(i / 32) * bytesPerBlock, true)));
          assert.ok(Math.abs(out[i] - values[i]) <= quantizationErrorBound(dtype, d), `${dtype} element ${i}`);
        }
      }
    });

    it('tq1_0 and tq2_0 round-trip every ternary pattern exactly (element order as ggml)', () => {
      const scale = 0.375; // exact in f16
      const ternary = Float32Array.from({ length: 1024 }, (_, i) => scale * (((i * 7 + (i >> 3)) % 3) - 1));
      for (const [dtype, quantize] of [
        ['tq1_0', quantizeTQ1_0],
        ['tq2_0', quantizeTQ2_0],
      ] as const) {
        assert.deepEqual(dequantizeToF32(dtype, quantize(ternary), ternary.length), ternary, dtype);
      }
    });

    it('tq1_0: trits of one byte are 32 elements apart, the most significant first', () => {
      const block = new Uint8Array(54);
      new DataView(block.buffer).setUint16(52, f32ToF16(1), true);
      // trits (2, 0, 1, 1, 2) = 2·81 + 0·27 + 1·9 + 1·3 + 2 = 176, stored as ceil(176·256/243) = 186
      block[0] = 186;
      const out = dequantizeToF32('tq1_0', block, 256);
      assert.deepEqual([out[0], out[32], out[64], out[96], out[128]], [1, -1, 0, 0, 1]);
      assert.equal(out[1], -1); // byte 0 of qs is 0 → all trits 0 → −1
    });

    it('tq2_0: bits 2l..2l+1 of byte m are element 32l + m', () => {
      const block = new Uint8Array(66);
      new DataView(block.buffer).setUint16(64, f32ToF16(1), true);
      block[5] = 0b10_01_00_10; // elements 5, 37, 69, 101 = codes 2, 0, 1, 2
      const out = dequantizeToF32('tq2_0', block, 256);
      assert.deepEqual([out[5], out[37], out[69], out[101]], [1, -1, 0, 1]);
    });

    it('blockCodes: one unsigned code per element and one scale per block, element = d · (code + offset)', () => {
      const q4 = new Uint8Array(18);
      new DataView(q4.buffer).setUint16(0, f32ToF16(2), true);
      q4[2] = 0x9f;
      const codes4 = blockCodes('q4_0', q4, 32);
      assert.equal(codes4.offset, -8);
      assert.deepEqual([codes4.codes[0], codes4.codes[16], codes4.codes[1]], [15, 9, 0]);
      assert.deepEqual(codes4.scales, Float32Array.from([2]));
      const q8 = new Uint8Array(34);
      q8[2] = 0x81; // −127
      assert.equal(blockCodes('q8_0', q8, 32).codes[0], 1);
      const tq2 = new Uint8Array(2 * 66);
      tq2[66] = 0b11; // block 1, element 0: code 3 (undefined in ggml) is passed on
      new DataView(tq2.buffer).setUint16(66 + 64, f32ToF16(0.5), true);
      const codes2 = blockCodes('tq2_0', tq2, 512);
      assert.equal(codes2.codes[256], 3);
      assert.deepEqual(codes2.scales, Float32Array.from([0, 0.5]));
      for (const [dtype, quantize] of [['tq1_0', quantizeTQ1_0], ['tq2_0', quantizeTQ2_0], ['q4_0', quantizeQ4_0], ['q8_0', quantizeQ8_0]] as const) {
        const bytes = quantize(values.subarray(0, 512));
        const { codes, scales, offset } = blockCodes(dtype, bytes, 512);
        const perBlock = 512 / scales.length;
        const rebuilt = Float32Array.from(codes, (c, i) => scales[Math.floor(i / perBlock)] * (c + offset));
        assert.deepEqual(rebuilt, dequantizeToF32(dtype, bytes, 512), dtype);
      }
      assert.throws(() => blockCodes('f16', new Uint8Array(2), 1), RangeError);
    });

    it('encodeBlocks is the inverse of blockCodes, byte for byte with the reference quantizers', () => {
      const random = seededRandom(11).uniform;
      for (const [dtype, levels] of [['q4_0', 16], ['tq1_0', 3], ['tq2_0', 3], ['q8_0', 256]] as const) {
        const { blockElements } = dtypeLayout(dtype);
        const codes = Uint8Array.from({ length: 4 * blockElements }, () => Math.floor(random() * levels));
        const scales = Float32Array.from({ length: 4 }, () => f16ToF32(f32ToF16(0.01 + random())));
        const bytes = encodeBlocks(dtype, codes, scales);
        const back = blockCodes(dtype, bytes, codes.length);
        assert.deepEqual(back.codes, codes, dtype);
        assert.deepEqual(back.scales, scales, dtype);
      }
      // On-grid values (d * (code - 1) with d the block's largest |value|) encode as llama.cpp does.
      const codes = Uint8Array.from({ length: 512 }, (_, i) => (i * 7 + (i >> 3)) % 3);
      codes[0] = 2;
      codes[256] = 0;  // each block reaches |value| = d
      const scales = Float32Array.from([0.5, 0.25]);
      const values = Float32Array.from(codes, (c, i) => scales[i >> 8] * (c - 1));
      assert.deepEqual(encodeBlocks('tq2_0', codes, scales), quantizeTQ2_0(values));
      assert.deepEqual(encodeBlocks('tq1_0', codes, scales), quantizeTQ1_0(values));
    });

    it('rejects counts that are not whole blocks, short buffers and unsupported dtypes', () => {
      assert.throws(() => dequantizeToF32('q8_0', new Uint8Array(34), 31), RangeError);
      assert.throws(() => dequantizeToF32('q8_0', new Uint8Array(33), 32), RangeError);
      assert.throws(() => dequantizeToF32('i32', new Uint8Array(4), 1), RangeError);
      assert.throws(() => dequantizeToF32('f32', new Uint8Array(4), -1), RangeError);
      assert.throws(() => dequantizeToF32('q4_0', new Uint8Array(18), 2 ** 40), RangeError);
    });
  });
});
