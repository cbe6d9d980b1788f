// The pieces of the quantize pipeline on hand-worked cases: ParetoQ's forward in a tensor's dtype
// (where bf16 rounding of an intermediate changes the level), exact scales, --tensor-bits rules and
// the progress bar.
import { strict as assert } from 'node:assert';

import { fakeQuantizeRows, promotedDtype, roundHalfEven, type TorchFloat } from '../../lib/convert/paretoq';
import { ProgressBar } from '../../lib/convert/progress';
import { TensorBitsMatcher, parseBits, parseTensorBits } from '../../lib/convert/recipe';
import { quantize, type QuantFormat } from '../../lib/qtensor';
import { bf16Bits, fromBf16Bits } from '../helpers/paretoq';

function forward(format: QuantFormat, dtype: TorchFloat, weights: number[], alpha: number): number[] {
  const out = new Float32Array(weights.length);
  fakeQuantizeRows(format, dtype, weights, [alpha], weights.length, 0, 1, out);
  return [...out];
}

describe('convert/paretoq: the forward quantizers in a dtype', () => {
  it('rounds half to even, as torch.round', () => {
    assert.deepEqual([0.5, 1.5, 2.5, -1.5, -2.5, 0.49, -0.51, -0.2].map(roundHalfEven), [0, 2, 2, -2, -2, 0, -1, -0]);
    assert.ok(Object.is(roundHalfEven(-0.5), -0));
  });

  it('ternary: u = 171/512 gives 1.5u = 0.50098 exactly in f32 (level 1) but 0.5 in bf16 (level 0, half to even)', () => {
    const w = 0.333984375;  // 171/512: a bf16 value; alpha 1
    assert.deepEqual(forward('t158', 'f32', [w, -w], 1), [Math.fround(1 / 1.5), -Math.fround(1 / 1.5)]);
    assert.deepEqual(forward('t158', 'bf16', [w, -w], 1).map(Math.abs), [0, 0]);
    // above the bf16 midpoint, level 1 is bf16(2/3) * alpha
    assert.deepEqual(forward('t158', 'bf16', [0.3359375], 1), [fromBf16Bits(bf16Bits(2 / 3))]);
  });

  it('2-bit SEQ: levels ±1/4, ±3/4 of alpha, clipped at ±0.99 (never a level 2)', () => {
    assert.deepEqual(forward('b2', 'f32', [0.1, 0.3, -0.1, -0.3, 5, -5, 0.99], 0.4), [0.1, 0.3, -0.1, -0.3, 0.3, -0.3, 0.3].map(Math.fround));
  });

  it('3/4-bit LSQ: round then clamp to [-4, 3] / [-8, 7]; 1-bit: sign, with sign(0) = 0', () => {
    assert.deepEqual(forward('b3', 'f32', [0.25, 0.35, 3.6, -4.6, -0.5], 1), [0, 0, 3, -4, -0]);
    assert.deepEqual(forward('b4', 'f32', [9, -9, 1.25, 1.75], 0.5), [3.5, -4, 1, 2]);  // u = 2.5 -> 2, 3.5 -> 4
    assert.deepEqual(forward('b1', 'bf16', [0.001, -3, 0], 0.25), [0.25, -0.25, 0]);
  });

  it('alpha below 1e-5 becomes 1e-5 in the dtype; non-finite values are refused, naming the row', () => {
    const eps = Math.fround(1e-5);
    assert.deepEqual(forward('b4', 'f32', [eps * 3], 0), [Math.fround(eps * 3)]);
    assert.throws(() => forward('b2', 'f32', [NaN], 1), /row 0, column 0 is NaN/);
    assert.throws(() => forward('b2', 'f32', [1], Infinity), /weight_clip_val of row 0 is Infinity/);
    assert.equal(promotedDtype('bf16', 'bf16'), 'bf16');
    assert.equal(promotedDtype('bf16', 'f32'), 'f32');
    assert.equal(promotedDtype('f16', 'bf16'), 'f32');
  });
});

describe('exact quantization of bf16 checkpoints', () => {
  it('makes the f32 weights equal the bf16 checkpoint values where one scale can (1-bit), and keeps bf16 exactness otherwise', () => {
    const cols = 64;
    for (const [format, levels, alpha] of [['b1', [-1, 1], 0.0923], ['b2', [-0.75, -0.25, 0.25, 0.75], 0.0923]] as const) {
      const a = fromBf16Bits(bf16Bits(alpha));
      const bits = Uint16Array.from({ length: 2 * cols }, (_, i) => bf16Bits(a * levels[(i * 7) % levels.length] * (i < cols ? 1 : 1.37)));
      const packed = quantize(bits, 2, cols, { format, method: 'exact', dtype: 'bf16' });
      const values = packed.dequantize();
      values.forEach((v, i) => assert.equal(bf16Bits(v), bits[i], `${format}[${i}]`));
      if (format === 'b1') values.forEach((v, i) => assert.equal(v, fromBf16Bits(bits[i]), `${format}[${i}]`));
      packed.dispose();
    }
  });
});

describe('convert/recipe: bits and --tensor-bits', () => {
  it('parses bits and rules, with the validation message shape', () => {
    assert.equal(parseBits('bits', '1.58'), 1.58);
    assert.equal(parseBits('bits', 4), 4);
    assert.throws(() => parseBits('bits', '8'), { name: 'RangeError', message: "Expected one of 1, 1.58, 2, 3, 4 for bits but received '8' of type string" });
    assert.throws(() => parseBits('bits', true), { name: 'TypeError', message: 'Expected one of 1, 1.58, 2, 3, 4 for bits but received true of type boolean' });
    assert.deepEqual(parseTensorBits('mlp.down=4, attn.*=3,*=2'), [
      { pattern: 'mlp.down', bits: 4 }, { pattern: 'attn.*', bits: 3 }, { pattern: '*', bits: 2 },
    ]);
    assert.throws(() => parseTensorBits('mlp.down=4,,'), /for tensorBits rule 2 but received ''/);
    assert.throws(() => parseTensorBits('mlp[0]=4'), /for tensorBits rule 1/);
  });

  it('the first matching rule wins; layers.N. narrows a rule to one layer; unused rules are an error', () => {
    const matcher = new TensorBitsMatcher(parseTensorBits('layers.1.mlp.*=1,mlp.down=4,attn.*=3'), 2);
    assert.equal(matcher.bitsFor(0, 'mlp.down_proj'), 4);
    assert.equal(matcher.bitsFor(1, 'mlp.down_proj'), 1);
    assert.equal(matcher.bitsFor(1, 'mlp.up_proj'), 1);
    assert.equal(matcher.bitsFor(0, 'mlp.up_proj'), 2);
    assert.equal(matcher.bitsFor(0, 'self_attn.v_proj'), 3);
    matcher.checkAllUsed();
    const unused = new TensorBitsMatcher(parseTensorBits('*=3,mlp.down=4'), 2);
    unused.bitsFor(0, 'mlp.down_proj');
    assert.throws(() => unused.checkAllUsed(), { name: 'RangeError', message: /received 'mlp.down=4' of type string/ });
  });
});

describe('convert/progress: the bar', () => {
  function stream(isTTY: boolean) {
    const writes: string[] = [];
    return { isTTY, columns: 100, writes, write: (s: string) => writes.push(s) > 0 } as unknown as NodeJS.WritableStream & { isTTY: boolean; writes: string[] };
  }

  it('draws on a terminal (throttled, always the last step) and ends with the summary', () => {
    const tty = stream(true);
    const bar = new ProgressBar(tty, 'quantize');
    bar.update({ done: 1, total: 4, name: 'a' });
    bar.update({ done: 2, total: 4, name: 'b' });  // within 100 ms: skipped
    bar.update({ done: 4, total: 4, name: 'd' });
    bar.finish('done');
    assert.equal(tty.writes.length, 3);
    assert.match(tty.writes[0], /^\rquantize \[#{8}\.{22}\]  25% 1\/4 a\x1b\[K$/);
    assert.match(tty.writes[1], /^\rquantize \[#{30}\] 100% 4\/4 d\x1b\[K$/);
    assert.equal(tty.writes[2], '\r\x1b[Kdone\n');
  });

  it('writes only the summary line elsewhere', () => {
    const file = stream(false);
    const bar = new ProgressBar(file, 'synth');
    bar.update({ done: 1, total: 2, name: 'a' });
    bar.update({ done: 2, total: 2, name: 'b' });
    bar.finish('summary');
    assert.deepEqual(file.writes, ['summary\n']);
  });
});
