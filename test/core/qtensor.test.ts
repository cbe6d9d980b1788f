// The QTensor API: quantizers against the paper's formulas, matmul against a float64 reference,
// threads, views, and bad input that must throw typed errors, never crash.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';

import { cpuInfo, DisposedError, LowbitError, QTensor, QUANT_FORMATS, quantize, quantizeAsync, tensorFromPacked } from '../../lib';
import { binding } from '../../lib/native';
import { canSpawnNode, seededRandom } from '../helpers/env';

const LEVELS: Record<string, number[]> = {
  b1: [-0.5, 0.5], t158: [-1, 0, 1], b2: [-1.5, -0.5, 0.5, 1.5], b3: [-4, -3, -2, -1, 0, 1, 2, 3],
  b4: [-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7],
};

function randomMatrix(rows: number, cols: number, seed: number, scale = 1): Float32Array {
  const rand = seededRandom(seed);
  return Float32Array.from({ length: rows * cols }, () => scale * rand.normal());
}

function reference(dense: Float32Array, x: Float32Array, rows: number, cols: number, n: number) {
  const exact = new Float64Array(n * rows), abs = new Float64Array(n * rows);
  for (let v = 0; v < n; v++) {
    for (let r = 0; r < rows; r++) {
      let e = 0, a = 0;
      for (let j = 0; j < cols; j++) {
        const p = dense[r * cols + j] * x[v * cols + j];
        e += p;
        a += Math.abs(p);
      }
      exact[v * rows + r] = e;
      abs[v * rows + r] = a;
    }
  }
  return { exact, abs };
}

// bf16 bits of a float (round to nearest even), as a checkpoint stores them.
function toBf16(v: number): number {
  const f = new Float32Array([v]), u = new Uint32Array(f.buffer);
  return ((u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16) & 0xffff;
}
function fromBf16(h: number): number {
  return new Float32Array(new Uint32Array([h << 16]).buffer)[0];
}

describe('QTensor', () => {
  it('reports the CPU and the kernels chosen', () => {
    const info = cpuInfo();
    assert.ok(info.isas.includes(info.isa));
    assert.ok(info.isas.includes('ref'));
    assert.ok(info.physicalCores >= 1 && info.defaultThreads === info.physicalCores);
    if (info.arch === 'x64') assert.equal(typeof info.features.avx2, 'boolean');
  });

  it('reports the x86 vendor and family as the kernel sees them', function () {
    const info = cpuInfo();
    if (info.arch !== 'x64') {
      assert.deepEqual([info.vendor, info.family], ['', 0]);
      this.skip();
    }
    if (!fs.existsSync('/proc/cpuinfo')) this.skip();
    // Linux lists every CPU with the same cpuid fields: the first entry serves.
    const field = (name: string) => fs.readFileSync('/proc/cpuinfo', 'utf8').match(new RegExp(`^${name}\\s*: (.*)$`, 'm'))?.[1];
    assert.equal(info.vendor, field('vendor_id'));
    assert.equal(info.family, Number(field('cpu family')));
  });

  for (const format of QUANT_FORMATS) {
    it(`${format}: every dequantized weight is scale * level`, () => {
      const rows = 7, cols = 150;
      const t = quantize(randomMatrix(rows, cols, 1), rows, cols, { format, method: 'rtn' });
      const deq = t.dequantize(), codes = t.codes(), scales = t.scales()!;
      assert.equal(t.format, format);
      assert.equal(scales.length, rows);
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < cols; j++) {
          const level = LEVELS[format][codes[r * cols + j]];
          assert.ok(level !== undefined, `code out of range at ${r},${j}`);
          assert.equal(deq[r * cols + j], Math.fround(scales[r] * level));
        }
      }
      assert.equal(t.bytes, rows * Math.ceil((cols * (format === 't158' ? 2 : Number(format.slice(1)))) / 8) + rows * 4);
    });

    it(`${format}: exact packs bf16 fake-quantized ParetoQ rows losslessly`, () => {
      const rows = 5, cols = 96;
      const rand = seededRandom(2);
      const bits = new Uint16Array(rows * cols);
      for (let r = 0; r < rows; r++) {
        const alpha = fromBf16(toBf16(0.03 * Math.exp(rand.normal() * 0.3)));
        // d * level with d the format's scale for alpha (research notes A3), rounded to bf16
        const d = { b1: 2 * alpha, t158: alpha / 1.5, b2: alpha / 2, b3: alpha, b4: alpha }[format];
        for (let j = 0; j < cols; j++) {
          const level = LEVELS[format][Math.floor(rand.uniform() * LEVELS[format].length)];
          bits[r * cols + j] = toBf16(d * level);
        }
      }
      const t = quantize(bits, rows, cols, { format, method: 'exact', dtype: 'bf16' });
      assert.deepEqual(t.dequantize('bf16'), bits);
      const deq = t.dequantize();
      for (let i = 0; i < bits.length; i++) assert.equal(toBf16(deq[i]), bits[i], `weight ${i}`);
    });
  }

  it('exact rejects an off-grid row, naming it', () => {
    const rows = 4, cols = 64;
    const w = new Float32Array(rows * cols).map((_, i) => (i % 2 ? 0.25 : -0.75));
    w[2 * cols + 5] = 0.3;
    assert.throws(() => quantize(w, rows, cols, { format: 'b2', method: 'exact' }),
      (e: unknown) => e instanceof LowbitError && e.code === 'LOWBIT_OFF_GRID' && /row 2 is not on the b2 grid/.test(e.message));
  });

  it('mse is at least as accurate as rtn', () => {
    const rows = 16, cols = 256, w = randomMatrix(rows, cols, 3);
    for (const format of QUANT_FORMATS) {
      const err = (t: QTensor) => t.dequantize().reduce((s, v, i) => s + (v - w[i]) ** 2, 0);
      assert.ok(err(quantize(w, rows, cols, { format, method: 'mse' })) <= err(quantize(w, rows, cols, { format, method: 'rtn' })) * (1 + 1e-9), format);
    }
  });

  for (const format of [...QUANT_FORMATS, 'f16', 'f32'] as const) {
    it(`${format}: matmul matches a float64 reference (int8 and f32 activations)`, async () => {
      const rows = 37, cols = 333, n = 3;
      let t: QTensor;
      if (format === 'f32' || format === 'f16') {
        const w = randomMatrix(rows, cols, 4);
        const bytes = format === 'f32' ? new Uint8Array(w.buffer) : new Uint8Array(new Uint16Array(w.length).map((_, i) => f16Bits(w[i])).buffer);
        t = tensorFromPacked(format, rows, cols, 0, bytes, null);
      } else {
        t = quantize(randomMatrix(rows, cols, 4), rows, cols, { format, group: format === 'b4' ? 64 : 0 });
      }
      const x = randomMatrix(n, cols, 5);
      const { exact, abs } = reference(t.dequantize(), x, rows, cols, n);
      const yf = await t.matmul(x, n, { activations: 'f32' });
      const yq = await t.matmul(x, n);
      for (let i = 0; i < exact.length; i++) {
        assert.ok(Math.abs(yf[i] - exact[i]) <= 2e-5 * abs[i] + 1e-5, `f32 ${i}: ${yf[i]} vs ${exact[i]}`);
        // int8 activations: each |error| <= half a step of 1/127 of the chunk's largest value
        assert.ok(Math.abs(yq[i] - exact[i]) <= abs[i] * 0.04 + 1e-4, `int8 ${i}: ${yq[i]} vs ${exact[i]}`);
      }
      assert.deepEqual(t.matmulSync(x, n), yq);
      assert.deepEqual(await t.matmul(x, n, { threads: 1 }), yq);
    });
  }

  it('views share storage and compute their rows', () => {
    const t = quantize(randomMatrix(20, 64, 6), 20, 64, { format: 'b3' });
    const v = t.view(4, 5), x = randomMatrix(1, 64, 7);
    assert.deepEqual(v.matmulSync(x), t.matmulSync(x).subarray(4, 9));
    assert.deepEqual(v.codes(), t.codes().subarray(4 * 64, 9 * 64));
    t.dispose();
    assert.deepEqual(v.matmulSync(x).length, 5);  // the view keeps its rows alive
  });

  it('interleaved copies (the layout models run decode on) keep their codes and products', () => {
    const rows = 48, cols = 1152, n = 3, w = randomMatrix(rows, cols, 21), x = randomMatrix(n, cols, 22);
    const interleavedIsa = cpuInfo().interleavedIsas.includes(cpuInfo().isa);
    for (const format of ['b1', 't158', 'b2', 'b3', 'b4'] as const) {
      const t = binding().AddonQTensor.quantize(w, rows, cols, format, 'rtn', 0, 'f32', 1);
      const u = t.interleaved();
      assert.ok(u.info().interleaved && !t.info().interleaved);
      assert.deepEqual(u.packed(), t.packed(), `${format} packed() gives rows in order`);
      assert.deepEqual(u.codes(), t.codes());
      assert.deepEqual(u.dequantize(), t.dequantize());
      // GEMMs and float activations run the same kernels on row copies: bit for bit
      assert.deepEqual(u.matmulSync(x, n, 2, 'int8'), t.matmulSync(x, n, 2, 'int8'));
      assert.deepEqual(u.matmulSync(x.subarray(0, cols), 1, 2, 'f32'), t.matmulSync(x.subarray(0, cols), 1, 2, 'f32'));
      // one vector: the interleaved GEMV, its own int8 classes, within the same bound as above
      const { exact, abs } = reference(t.dequantize(), x, rows, cols, 1);
      const y = u.matmulSync(x.subarray(0, cols), 1, 2, 'int8');
      for (let i = 0; i < rows; i++) assert.ok(Math.abs(y[i] - exact[i]) <= abs[i] * 0.04 + 1e-4, `${format} ${i}: ${y[i]} vs ${exact[i]}`);
      if (!interleavedIsa) assert.deepEqual(y, t.matmulSync(x.subarray(0, cols), 1, 2, 'int8'));
      assert.throws(() => u.view(0, 16), /no row views/);
      t.dispose();
      u.dispose();
    }
    for (const [format, r, c, group] of [['b2', 16, 256, 64], ['b2', 17, 64, 0], ['b2', 16, 100, 0]] as const) {
      const t = binding().AddonQTensor.quantize(randomMatrix(r, c, 23), r, c, format, 'rtn', group, 'f32', 1);
      assert.throws(() => t.interleaved(), (e: unknown) => e instanceof RangeError && /multiple of 16/.test(e.message), `${format} ${r}x${c}`);
      t.dispose();
    }
  });

  it('quantizeAsync equals quantize', async () => {
    const w = randomMatrix(50, 200, 8);
    const a = quantize(w, 50, 200, { format: 'b2', method: 'mse' });
    const b = await quantizeAsync(w, 50, 200, { format: 'b2', method: 'mse' });
    assert.deepEqual(b.packed(), a.packed());
    assert.deepEqual(b.scales(), a.scales());
  });

  it('round-trips through packed bytes and validates them', () => {
    const t = quantize(randomMatrix(9, 100, 9), 9, 100, { format: 't158' });
    const u = tensorFromPacked('t158', 9, 100, 0, t.packed(), t.scales());
    assert.deepEqual(u.dequantize(), t.dequantize());
    const bad = t.packed();
    bad[3] = 0xff;  // code 3 is not a ternary code
    assert.throws(() => tensorFromPacked('t158', 9, 100, 0, bad, t.scales()), /holds code 3, invalid for t158/);
    const nanScales = t.scales()!;
    nanScales[2] = NaN;
    assert.throws(() => tensorFromPacked('t158', 9, 100, 0, t.packed(), nanScales), /scale 2 is not finite/);
    assert.throws(() => tensorFromPacked('t158', 9, 100, 0, t.packed().subarray(1), t.scales()), /packed data has/);
  });

  describe('bad input', () => {
    const w = randomMatrix(4, 64, 10);
    const cases: [string, () => unknown, RegExp | ((e: unknown) => boolean)][] = [
      ['wrong length', () => quantize(w.subarray(1), 4, 64, { format: 'b2' }), (e) => e instanceof RangeError && /Expected rows \* cols = 256 weights but received 255/.test((e as Error).message)],
      ['unknown format', () => quantize(w, 4, 64, { format: 'b5' as never }), (e) => e instanceof RangeError && /Expected one of 'b1', 't158', 'b2', 'b3', 'b4' for format but received 'b5'/.test((e as Error).message)],
      ['format not a string', () => quantize(w, 4, 64, { format: 2 as never }), (e) => e instanceof TypeError],
      ['negative rows', () => quantize(w, -4, 64, { format: 'b2' }), (e) => e instanceof RangeError && /for rows/.test((e as Error).message)],
      ['fractional cols', () => quantize(w, 4, 6.4, { format: 'b2' }), (e) => e instanceof RangeError],
      ['rows x cols overflow', () => quantize(w, 2 ** 31, 2 ** 31, { format: 'b2' }), (e) => e instanceof RangeError],
      ['bad group', () => quantize(w, 4, 64, { format: 'b2', group: 48 }), (e) => e instanceof RangeError && /multiple of 32/.test((e as Error).message)],
      ['misspelled option', () => quantize(w, 4, 64, { format: 'b2', Method: 'rtn' } as never), /Misspelled option "Method" for quantize should be "method"/],
      ['Uint16Array without dtype', () => quantize(new Uint16Array(256), 4, 64, { format: 'b2' }), (e) => e instanceof TypeError],
      ['not an array', () => quantize([1, 2] as never, 1, 2, { format: 'b2' }), (e) => e instanceof TypeError],
      ['NaN weight', () => { const v = w.slice(); v[70] = NaN; return quantize(v, 4, 64, { format: 'b4' }); },
        (e) => e instanceof LowbitError && e.code === 'LOWBIT_BAD_INPUT' && /row 1, column 6 is not finite/.test(e.message)],
      ['Infinity weight', () => { const v = w.slice(); v[3] = -Infinity; return quantize(v, 4, 64, { format: 'b1' }); }, /row 0, column 3 is not finite/],
      ['matmul x length', () => quantize(w, 4, 64, { format: 'b2' }).matmulSync(new Float32Array(63)), (e) => e instanceof RangeError],
      ['matmul n', () => quantize(w, 4, 64, { format: 'b2' }).matmulSync(new Float32Array(64), 0), (e) => e instanceof RangeError],
      ['matmul threads', () => quantize(w, 4, 64, { format: 'b2' }).matmulSync(new Float32Array(64), 1, { threads: 0 }), (e) => e instanceof RangeError],
      ['matmul activations', () => quantize(w, 4, 64, { format: 'b2' }).matmulSync(new Float32Array(64), 1, { activations: 'int4' as never }), (e) => e instanceof RangeError],
      ['after dispose', () => { const t = quantize(w, 4, 64, { format: 'b2' }); t.dispose(); t.dispose(); return t.dequantize(); }, (e) => e instanceof DisposedError],
    ];
    for (const [name, fn, check] of cases) it(name, () => assert.throws(fn, check as never));

    it('rejects a matmul promise on a disposed tensor', async () => {
      const t = quantize(w, 4, 64, { format: 'b2' });
      t.dispose();
      await assert.rejects(t.matmul(new Float32Array(64)), DisposedError);
    });
  });

  it('LOWBIT_ISA forces a kernel set, and an unsupported one is a clear error', function () {
    if (!canSpawnNode()) this.skip();
    const run = (isa: string) => spawnSync(process.execPath, ['--import', 'tsx', '-e',
      `const l = require(${JSON.stringify(require.resolve('../../lib'))}); try { console.log(l.cpuInfo().isa) } catch (e) { console.log(e.code + ': ' + e.message) }`],
      { env: { ...process.env, LOWBIT_ISA: isa }, encoding: 'utf8' }).stdout.trim();
    assert.equal(run('ref'), 'ref');
    const missing = cpuInfo().arch === 'x64' ? 'neon' : 'avx2';
    assert.match(run(missing), new RegExp(`LOWBIT_UNSUPPORTED_ISA: instruction set '${missing}' is not available: it needs`));
    assert.match(run('sse9'), /LOWBIT_ISA='sse9' is not one of ref, avx2, avx512, neon, neon-dotprod/);
  });
});

function f16Bits(v: number): number {
  // Round to nearest even; test data is within the half range, values below 2^-14 become zero.
  const f = new Float32Array([v]), u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000, abs = u & 0x7fffffff;
  if (abs < 0x38800000) return sign;
  const rounded = abs + 0xfff + ((abs >>> 13) & 1);
  return sign | ((rounded - (112 << 23)) >>> 13);
}
