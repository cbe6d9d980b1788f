import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ByteWriter } from '../../lib/io/byte-writer';
import { dequantizeToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../lib/io/dtypes';
import {
  GgufValueType,
  canonicalTensorName,
  ggufTensorName,
  openGguf,
  readGgufHeader,
  readGgufMetadata,
} from '../../lib/io/gguf';
import { type GgufMetadataValue, type GgufTensorInput, ggufTyped, writeGguf } from '../../lib/io/gguf-writer';
import { EMBED_TOKENS, LM_HEAD, canonicalShapes, layerTensorName } from '../../lib/io/llama';
import { openLlama2c } from '../../lib/io/llama2c';
import { FileSource } from '../../lib/io/source';
import type { GgufValue } from '../../lib/io/types';
import { permuteRowsForHf } from '../helpers/convert';
import { seededRandom } from '../helpers/env';
import { BUNDLED_MODELS, GGUF_CONTEXT_LENGTH, makeTempDir, modelPath, removeDir } from '../helpers/models';
import { f32Bytes, quantizationErrorBound, quantizeQ4_0, quantizeQ8_0, quantizeTQ1_0, quantizeTQ2_0 } from '../helpers/quantize';
import { formatError } from '../helpers/errors';

const elements = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** The metadata of a GGUF header, with stored types, ready to write back. */
function typedMetadata(file: string): [string, GgufMetadataValue][] {
  const header = readGgufMetadata(file);
  return [...header.metadata].map(([key, value]) => [key, ggufTyped(header.types.get(key)!, value)]);
}

describe('io/gguf', () => {
  let dir: string;
  before(() => {
    dir = makeTempDir('gguf');
  });
  after(() => removeDir(dir));

  const ggufFiles = BUNDLED_MODELS.flatMap((m) =>
    [m.ggufF32, m.ggufQ8, m.ggufQ4].filter((f): f is string => f !== undefined).map((file) => ({ model: m, file })),
  );

  describe('bundled files', () => {
    for (const { model: bundled, file } of ggufFiles) {
      it(`${file}: config equals the README table (context 128, see below), tensors complete`, () => {
        const model = openGguf(modelPath(file));
        try {
          const c = model.config;
          assert.deepEqual(
            { dim: c.dim, hiddenDim: c.hiddenDim, nLayers: c.nLayers, nHeads: c.nHeads, nKvHeads: c.nKvHeads, vocabSize: c.vocabSize, maxSeqLen: c.maxSeqLen },
            { ...bundled.config, maxSeqLen: GGUF_CONTEXT_LENGTH },
          );
          assert.equal(c.headDim, c.dim / c.nHeads);
          assert.equal(c.normEps, 1e-5); // stored as float32 9.99999974e-6
          assert.equal(c.ropeTheta, 10000);
          assert.equal(c.ropeStyle, 'interleaved');
          // convert-llama2c-to-ggml always writes output.weight, even for a shared classifier.
          assert.equal(c.tiedEmbeddings, false);
          const expected = canonicalShapes(c);
          assert.deepEqual([...model.tensors.keys()].sort(), [...expected.keys()].sort());
          for (const [name, tensor] of model.tensors) {
            assert.deepEqual(tensor.shape, expected.get(name), name);
            assert.equal(tensor.read().length, tensor.byteLength, name);
          }
          assert.equal(model.tokenizer?.kind, 'gguf');
          assert.equal(model.bosId, 1);
          assert.deepEqual(model.eosIds, [2]);
          assert.equal(model.container, 'gguf');
          assert.equal((model.metadata.get('tokenizer.ggml.tokens') as string[]).length, c.vocabSize);
        } finally {
          model.close();
        }
      });
    }

    it('quantized files: norms stay f32, the output is q8_0, the rest is the file type', () => {
      for (const [file, rest] of [
        ['llama2xs/llama2xs-Q8_0.gguf', 'q8_0'],
        ['llama2xs/llama2xs-Q4_0.gguf', 'q4_0'],
        ['babyllama-tok105/babyllama-tok105-Q4_0.gguf', 'q4_0'],
      ] as const) {
        const model = openGguf(modelPath(file));
        try {
          for (const [name, tensor] of model.tensors) {
            const expected = name.endsWith('norm.weight') ? 'f32' : name === LM_HEAD ? 'q8_0' : rest;
            assert.equal(tensor.dtype, expected, `${file} ${name}`);
          }
        } finally {
          model.close();
        }
      }
    });

    it('a vocabulary-only GGUF: metadata readable, not a model', () => {
      const file = modelPath('tokenizers/ggml-vocab-llama-spm.gguf');
      const header = readGgufMetadata(file);
      assert.equal(header.tensors.length, 0);
      assert.equal((header.metadata.get('tokenizer.ggml.tokens') as string[]).length, 32000);
      assert.equal(header.metadata.get('tokenizer.ggml.add_bos_token'), true);
      assert.deepEqual(header.types.get('tokenizer.ggml.scores'), { type: GgufValueType.ARRAY, elementType: { type: GgufValueType.FLOAT32 } });
      const error = formatError(() => openGguf(file));
      assert.equal(error.key, EMBED_TOKENS);
    });
  });

  describe('cross-container equality', () => {
    for (const bundled of BUNDLED_MODELS.filter((m) => m.ggufF32 !== undefined)) {
      it(`${bundled.name}: the F32 GGUF holds the .bin's bytes for every canonical tensor, q/k not permuted`, () => {
        const bin = openLlama2c(modelPath(bundled.bin));
        const gguf = openGguf(modelPath(bundled.ggufF32!));
        try {
          for (const [name, tensor] of bin.tensors) assert.deepEqual(gguf.tensors.get(name)!.read(), tensor.read(), name);
          // The shared classifier was written out as output.weight: a copy of the embedding.
          assert.deepEqual(gguf.tensors.get(LM_HEAD)!.read(), bin.tensors.get(EMBED_TOKENS)!.read());
          // Finding: convert-llama2c-to-ggml copies wq/wk as they are. llama2.c stores them in Meta's
          // interleaved order, which is what GGUF `llama` expects, so no permutation is needed or done;
          // permuting (HF order) would not match.
          const q = bin.tensors.get(layerTensorName(0, 'self_attn.q_proj'))!;
          assert.notDeepEqual(gguf.tensors.get(q.name)!.read(), permuteRowsForHf(q.read(), bin.config.nHeads, q.shape[0]));
        } finally {
          bin.close();
          gguf.close();
        }
      });
    }

    for (const bundled of BUNDLED_MODELS.filter((m) => m.ggufQ8 !== undefined)) {
      it(`${bundled.name}: Q8_0/Q4_0 dequantise to within each block's error bound of the F32 file, and are its reference quantisation byte for byte`, () => {
        const f32 = openGguf(modelPath(bundled.ggufF32!));
        const quantized = [openGguf(modelPath(bundled.ggufQ8!)), openGguf(modelPath(bundled.ggufQ4!))];
        try {
          for (const model of quantized) {
            for (const [name, tensor] of model.tensors) {
              const reference = dequantizeToF32('f32', f32.tensors.get(name)!.read(), elements(tensor.shape));
              const bytes = tensor.read();
              if (tensor.dtype === 'f32') {
                assert.deepEqual(bytes, f32.tensors.get(name)!.read(), name);
                continue;
              }
              const dtype = tensor.dtype as 'q8_0' | 'q4_0';
              const values = dequantizeToF32(dtype, bytes, reference.length);
              const blockBytes = dtype === 'q8_0' ? 34 : 18;
              const view = new DataView(bytes.buffer, bytes.byteOffset);
              for (let i = 0; i < values.length; i++) {
                const d = f16ToF32(view.getUint16(Math.floor(i / 32) * blockBytes, true));
                const error = Math.abs(values[i] - reference[i]);
                if (error > quantizationErrorBound(dtype, d)) assert.fail(`${name}[${i}]: error ${error} with scale ${d}`);
              }
              const requantized = dtype === 'q8_0' ? quantizeQ8_0(reference) : quantizeQ4_0(reference);
              assert.deepEqual(requantized, bytes, `${name}: reference quantisation differs`);
            }
          }
        } finally {
          f32.close();
          quantized.forEach((m) => m.close());
        }
      });
    }
  });

  describe('writer', () => {
    it('rewrites every bundled GGUF byte for byte from its header and tensors', () => {
      for (const { file } of ggufFiles) {
        const source = FileSource.open(modelPath(file));
        try {
          const header = readGgufHeader(source);
          const out = path.join(dir, 'rewritten.gguf');
          const tensors: GgufTensorInput[] = header.tensors.map((t) => ({
            name: t.name,
            dtype: t.dtype,
            shape: t.shape,
            data: () => source.read(t.offset, t.byteLength),
          }));
          writeGguf(out, typedMetadata(modelPath(file)), tensors);
          assert.ok(fs.readFileSync(out).equals(fs.readFileSync(modelPath(file))), file);
        } finally {
          source.close();
        }
      }
    });

    it('round-trips metadata of every type, nested arrays included', () => {
      const metadata: [string, GgufMetadataValue][] = [
        ['u8', ggufTyped(GgufValueType.UINT8, 255)],
        ['i8', ggufTyped(GgufValueType.INT8, -128)],
        ['u16', ggufTyped(GgufValueType.UINT16, 65535)],
        ['i16', ggufTyped(GgufValueType.INT16, -32768)],
        ['u32', ggufTyped(GgufValueType.UINT32, 4294967295)],
        ['i32', -2147483648],
        ['f32', ggufTyped(GgufValueType.FLOAT32, 0.5)],
        ['bool', true],
        ['string', 'héllo ✓ \u0000 wörld'],
        ['u64', ggufTyped(GgufValueType.UINT64, 2n ** 64n - 1n)],
        ['i64', -(2n ** 63n)],
        ['f64', ggufTyped(GgufValueType.FLOAT64, Math.PI)],
        ['strings', ['a', '', 'ccc']],
        ['floats', [0.25, 1, -2]],
        ['empty', ggufTyped({ type: GgufValueType.ARRAY, elementType: { type: GgufValueType.UINT16 } }, [])],
        ['nested', [[1, 2], [3], []]],
        ['deep', ggufTyped({ type: GgufValueType.ARRAY, elementType: { type: GgufValueType.ARRAY, elementType: { type: GgufValueType.STRING } } }, [['x', 'y'], ['z']])],
      ];
      const file = path.join(dir, 'meta.gguf');
      writeGguf(file, metadata, []);
      const header = readGgufMetadata(file);
      const expected: [string, GgufValue][] = metadata.map(([k, v]) => [k, typeof v === 'object' && v !== null && !Array.isArray(v) ? v.value : v]);
      assert.deepEqual([...header.metadata], expected.map(([k, v]) => [k, k === 'f32' ? 0.5 : v]));
      assert.deepEqual(header.types.get('u64'), { type: GgufValueType.UINT64 });
      assert.deepEqual(header.types.get('i32'), { type: GgufValueType.INT32 });
      assert.deepEqual(header.types.get('floats'), { type: GgufValueType.ARRAY, elementType: { type: GgufValueType.FLOAT32 } });
      assert.deepEqual(header.types.get('empty'), { type: GgufValueType.ARRAY, elementType: { type: GgufValueType.UINT16 } });
      assert.deepEqual(header.types.get('nested'), { type: GgufValueType.ARRAY, elementType: { type: GgufValueType.ARRAY, elementType: { type: GgufValueType.INT32 } } });
      // Writing back with the stored types reproduces the file.
      const again = path.join(dir, 'meta2.gguf');
      writeGguf(again, typedMetadata(file), []);
      assert.ok(fs.readFileSync(again).equals(fs.readFileSync(file)));
    });

    it('stores f16, bf16, q8_0, q4_0, tq1_0 and tq2_0 tensors at the requested alignment', () => {
      const random = seededRandom(3).uniform;
      const values = Float32Array.from({ length: 2 * 512 }, () => random() - 0.5);
      const ternary = Float32Array.from(values, (v) => 0.25 * Math.sign(Math.round(v * 3)) + 0); // + 0: no −0
      const halves = (encode: (v: number) => number) => {
        const out = new ByteWriter();
        values.forEach((v) => out.u16(encode(v)));
        return out.bytes();
      };
      const tensors: GgufTensorInput[] = [
        { name: 'a.f32', dtype: 'f32', shape: [3], data: f32Bytes([1, 2, 3]) },
        { name: 'b.f16', dtype: 'f16', shape: [2, 512], data: halves(f32ToF16) },
        { name: 'c.bf16', dtype: 'bf16', shape: [2, 512], data: halves(f32ToBf16) },
        { name: 'd.q8_0', dtype: 'q8_0', shape: [2, 512], data: () => quantizeQ8_0(values) },
        { name: 'e.q4_0', dtype: 'q4_0', shape: [2, 512], data: quantizeQ4_0(values) },
        { name: 'f.tq1_0', dtype: 'tq1_0', shape: [2, 512], data: quantizeTQ1_0(ternary) },
        { name: 'g.tq2_0', dtype: 'tq2_0', shape: [2, 512], data: quantizeTQ2_0(ternary) },
      ];
      for (const alignment of [32, 64, 1]) {
        const file = path.join(dir, `types-${alignment}.gguf`);
        writeGguf(file, [['general.architecture', 'test']], tensors, { alignment });
        const source = FileSource.open(file);
        try {
          const header = readGgufHeader(source);
          assert.equal(header.alignment, alignment);
          assert.equal(header.metadata.get('general.alignment'), alignment === 32 ? undefined : alignment);
          for (const [i, entry] of header.tensors.entries()) {
            assert.equal(entry.offset % alignment, 0);
            assert.equal(entry.dtype, tensors[i].dtype);
            assert.deepEqual(entry.shape, tensors[i].shape);
            assert.deepEqual(entry.ne, [...tensors[i].shape].reverse());
            const data = tensors[i].data;
            assert.deepEqual(source.read(entry.offset, entry.byteLength), typeof data === 'function' ? data() : data);
          }
          const tq1 = header.tensors[5];
          assert.deepEqual(dequantizeToF32('tq1_0', source.read(tq1.offset, tq1.byteLength), 1024), ternary);
          const tq2 = header.tensors[6];
          assert.deepEqual(dequantizeToF32('tq2_0', source.read(tq2.offset, tq2.byteLength), 1024), ternary);
        } finally {
          source.close();
        }
      }
    });

    it('rejects what it cannot write with argument errors', () => {
      const file = path.join(dir, 'bad.gguf');
      assert.throws(() => writeGguf(file, [], [{ name: 'x', dtype: 'q4_0', shape: [3, 30], data: new Uint8Array(0) }]), RangeError);
      assert.throws(() => writeGguf(file, [], [{ name: 'x', dtype: 'f32', shape: [2], data: new Uint8Array(4) }]), RangeError);
      assert.throws(() => writeGguf(file, [], [{ name: 'x', dtype: 'i32' as 'f32', shape: [1], data: new Uint8Array(4) }]), RangeError);
      assert.throws(() => writeGguf(file, [['k', ggufTyped(GgufValueType.UINT8, 256)]], []), RangeError);
      assert.throws(() => writeGguf(file, [['k', ggufTyped(GgufValueType.STRING, 1)]], []), TypeError);
      assert.throws(() => writeGguf(file, [], [], { alignment: 48 }), RangeError);
      assert.equal(fs.existsSync(file), false); // a failed write leaves no file
    });
  });

  it('maps llama.cpp names to canonical names and back', () => {
    const pairs = [
      ['token_embd.weight', 'model.embed_tokens.weight'],
      ['output_norm.weight', 'model.norm.weight'],
      ['output.weight', 'lm_head.weight'],
      ['blk.12.attn_q.weight', 'model.layers.12.self_attn.q_proj.weight'],
      ['blk.0.attn_k.weight', 'model.layers.0.self_attn.k_proj.weight'],
      ['blk.0.attn_v.weight', 'model.layers.0.self_attn.v_proj.weight'],
      ['blk.0.attn_output.weight', 'model.layers.0.self_attn.o_proj.weight'],
      ['blk.1.ffn_gate.weight', 'model.layers.1.mlp.gate_proj.weight'],
      ['blk.1.ffn_up.weight', 'model.layers.1.mlp.up_proj.weight'],
      ['blk.1.ffn_down.weight', 'model.layers.1.mlp.down_proj.weight'],
      ['blk.2.attn_norm.weight', 'model.layers.2.input_layernorm.weight'],
      ['blk.2.ffn_norm.weight', 'model.layers.2.post_attention_layernorm.weight'],
      ['rope_freqs.weight', 'rope_freqs.weight'],
      ['blk.0.attn_q.bias', 'blk.0.attn_q.bias'],
    ];
    for (const [gguf, canonical] of pairs) {
      assert.equal(canonicalTensorName(gguf), canonical);
      assert.equal(ggufTensorName(canonical), gguf);
    }
  });

  describe('bad input', () => {
    const original = new Uint8Array(fs.readFileSync(modelPath('llama2xs/llama2xs-Q4_0.gguf')));
    const write = (bytes: Uint8Array, name = 'bad.gguf') => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, bytes);
      return file;
    };
    /** Offset just after the name of tensor `name` in the header (its n_dims field). */
    const tensorInfoAt = (bytes: Uint8Array, name: string) => {
      const needle = Buffer.concat([new ByteWriter().u64(name.length).bytes(), Buffer.from(name)]);
      const at = Buffer.from(bytes).indexOf(needle);
      assert.ok(at > 0);
      return at + needle.length;
    };
    const patched = (patch: (view: DataView, bytes: Uint8Array) => void) => {
      const bytes = original.slice();
      patch(new DataView(bytes.buffer), bytes);
      return write(bytes);
    };
    const expectError = (file: string, pattern: RegExp, key?: string) => {
      const error = formatError(() => openGguf(file));
      assert.match(error.message, pattern);
      assert.equal(error.file, file);
      if (key !== undefined) assert.equal(error.key, key);
    };

    it('wrong magic, GGUF v1, big-endian', () => {
      expectError(patched((v) => v.setUint32(0, 0x46554748, true)), /bad magic/);
      expectError(patched((v) => v.setUint32(4, 1, true)), /version 1 is not supported/, 'version');
      expectError(patched((v) => v.setUint32(4, 3, false)), /big-endian/, 'version');
    });

    it('truncation at many offsets', () => {
      for (let length = 0; length < original.length; length += length < 400 ? 3 : 1531) {
        formatError(() => openGguf(write(original.subarray(0, length))));
      }
      expectError(write(original.subarray(0, original.length - 1)), /runs past the end/, 'blk.4.ffn_up.weight');
    });

    it('negative or huge counts and string lengths', () => {
      expectError(patched((v) => v.setBigUint64(8, 2n ** 63n, true)), /too large/, 'tensor_count');
      expectError(patched((v) => v.setBigUint64(16, 2n ** 40n, true)), /exceeds/, 'metadata_kv_count');
      expectError(patched((v) => v.setBigUint64(8, 100000n, true)), /exceeds/, 'tensor_count');
      // first key's length, then the token array's count
      expectError(patched((v) => v.setBigUint64(24, 2n ** 64n - 1n, true)), /string length .* too large/, 'metadata key #0');
      const tokensCount = 24 + 8 + 'tokenizer.ggml.tokens'.length + 4 + 4;
      expectError(patched((v) => v.setBigUint64(tokensCount, 2n ** 50n, true)), /exceeds|overflows/, 'tokenizer.ggml.tokens');
      expectError(patched((v) => v.setBigUint64(tokensCount, 2n ** 20n, true)), /exceeds/, 'tokenizer.ggml.tokens');
      const firstToken = tokensCount + 8;
      expectError(patched((v) => v.setBigUint64(firstToken, 2n ** 32n, true)), /truncated/, 'tokenizer.ggml.tokens');
    });

    it('tensor offsets past the end, misaligned, overlapping', () => {
      const at = tensorInfoAt(original, 'blk.0.attn_k.weight'); // 2 dims, then type, then offset
      const offsetAt = at + 4 + 16 + 4;
      expectError(patched((v) => v.setBigUint64(offsetAt, BigInt(original.length), true)), /past the end/, 'blk.0.attn_k.weight');
      expectError(patched((v) => v.setBigUint64(offsetAt, 2n ** 62n, true)), /too large/, 'blk.0.attn_k.weight');
      expectError(patched((v) => v.setBigUint64(offsetAt, 53504n + 16n, true)), /not a multiple of the alignment/, 'blk.0.attn_k.weight');
      // blk.0.attn_norm starts 1152 bytes after attn_k: point attn_k there too
      const normAt = tensorInfoAt(original, 'blk.0.attn_norm.weight');
      expectError(patched((v) => v.setBigUint64(normAt + 4 + 8 + 4, 53504n, true)), /overlap/);
    });

    it('dims: too many, zero-block rows, products that overflow', () => {
      const at = tensorInfoAt(original, 'blk.0.attn_k.weight');
      expectError(patched((v) => v.setUint32(at, 5, true)), /5 dims/, 'blk.0.attn_k.weight');
      expectError(patched((v) => v.setUint32(at, 0, true)), /0 dims/, 'blk.0.attn_k.weight');
      expectError(patched((v) => v.setBigUint64(at + 4, 33n, true)), /multiple of 32/, 'blk.0.attn_k.weight');
      expectError(patched((v) => {
        v.setBigUint64(at + 4, 2n ** 40n, true);
        v.setBigUint64(at + 12, 2n ** 40n, true);
      }), /overflows 2\^53|too large/, 'blk.0.attn_k.weight');
      expectError(patched((v) => v.setBigUint64(at + 12, 2n ** 20n, true)), /exceeds|past the end/, 'blk.0.attn_k.weight');
    });

    it('unsupported tensor types name the tensor and the type', () => {
      const at = tensorInfoAt(original, 'blk.0.attn_k.weight');
      expectError(patched((v) => v.setUint32(at + 4 + 16, 12, true)), /Q4_K \(12\) is not supported/, 'blk.0.attn_k.weight');
      expectError(patched((v) => v.setUint32(at + 4 + 16, 24, true)), /I8 \(24\) is not supported/, 'blk.0.attn_k.weight');
      expectError(patched((v) => v.setUint32(at + 4 + 16, 999, true)), /unknown \(999\) is not supported/, 'blk.0.attn_k.weight');
    });

    it('unknown value types, bad bools, arrays nested too deep, duplicates, bad alignment', () => {
      const typeOfFirstValue = 24 + 8 + 'tokenizer.ggml.tokens'.length;
      expectError(patched((v) => v.setUint32(typeOfFirstValue, 13, true)), /unknown value type 13/, 'tokenizer.ggml.tokens');
      expectError(patched((v) => v.setUint32(typeOfFirstValue + 4, 13, true)), /unknown array element type/, 'tokenizer.ggml.tokens');
      const file = (metadata: [string, GgufMetadataValue][]) => {
        writeGguf(path.join(dir, 'meta.gguf'), metadata, []);
        return path.join(dir, 'meta.gguf');
      };
      const boolFile = file([['flag', true]]);
      const bytes = fs.readFileSync(boolFile);
      bytes[24 + 8 + 'flag'.length + 4] = 2;
      fs.writeFileSync(boolFile, bytes);
      assert.match(formatError(() => readGgufMetadata(boolFile)).message, /bool must be 0 or 1/);
      let deep: GgufValue = [1];
      for (let i = 0; i < 10; i++) deep = [deep];
      const deepError = formatError(() => readGgufMetadata(file([['deep', deep]])));
      assert.match(deepError.message, /nested deeper/);
      assert.equal(deepError.key, 'deep');
      const dupFile = file([['aaaa', 1], ['bbbb', 2]]);
      fs.writeFileSync(dupFile, Buffer.from(fs.readFileSync(dupFile).toString('latin1').replace('bbbb', 'aaaa'), 'latin1'));
      assert.equal(formatError(() => readGgufMetadata(dupFile)).key, 'aaaa');
      for (const alignment of [0, 48, -32, ggufTyped(GgufValueType.STRING, '32')]) {
        // The writer refuses bad alignments, so write another key and rename it.
        const alignmentFile = file([['general.alignmenX', alignment]]);
        fs.writeFileSync(alignmentFile, Buffer.from(fs.readFileSync(alignmentFile).toString('latin1').replace('alignmenX', 'alignment'), 'latin1'));
        const error = formatError(() => readGgufMetadata(alignmentFile));
        assert.equal(error.key, 'general.alignment');
      }
    });

    it('duplicate tensor names', () => {
      const tensors: GgufTensorInput[] = [
        { name: 'aaaa', dtype: 'f32', shape: [1], data: new Uint8Array(4) },
        { name: 'bbbb', dtype: 'f32', shape: [1], data: new Uint8Array(4) },
      ];
      const file = path.join(dir, 'dup.gguf');
      writeGguf(file, [], tensors);
      fs.writeFileSync(file, Buffer.from(fs.readFileSync(file).toString('latin1').replace('bbbb', 'aaaa'), 'latin1'));
      assert.equal(formatError(() => readGgufMetadata(file)).key, 'aaaa');
    });

    describe('config', () => {
      /** stories260K's F32 GGUF with metadata edited by `edit`. */
      const withMetadata = (edit: (metadata: Map<string, GgufMetadataValue>) => void) => {
        const source = FileSource.open(modelPath('stories260K/stories260K-f32.gguf'));
        try {
          const header = readGgufHeader(source);
          const metadata = new Map(typedMetadata(source.file));
          edit(metadata);
          const file = path.join(dir, 'config.gguf');
          writeGguf(file, metadata, header.tensors.map((t) => ({ ...t, data: source.read(t.offset, t.byteLength) })));
          return file;
        } finally {
          source.close();
        }
      };

      it('missing keys are named', () => {
        for (const key of ['llama.embedding_length', 'llama.feed_forward_length', 'llama.block_count', 'llama.attention.head_count', 'llama.context_length', 'llama.attention.layer_norm_rms_epsilon']) {
          expectError(withMetadata((m) => m.delete(key)), /missing/, key);
        }
        expectError(withMetadata((m) => m.delete('general.architecture')), /not supported/, 'general.architecture');
      });

      it('wrong types and unsupported variants are named', () => {
        expectError(withMetadata((m) => m.set('general.architecture', 'gpt2')), /gpt2 is not supported/, 'general.architecture');
        expectError(withMetadata((m) => m.set('llama.block_count', 'five')), /expected a number/, 'llama.block_count');
        expectError(withMetadata((m) => m.set('llama.block_count', [5])), /expected a number/, 'llama.block_count');
        expectError(withMetadata((m) => m.set('llama.block_count', 6)), /missing tensor/, 'model.layers.5.self_attn.q_proj.weight');
        expectError(withMetadata((m) => m.set('llama.embedding_length', 65)), /not a multiple of 8 heads/, 'llama.attention.head_count');
        expectError(withMetadata((m) => m.set('llama.attention.head_count_kv', 3)), /cannot share/, 'nKvHeads');
        expectError(withMetadata((m) => m.set('llama.rope.dimension_count', 4)), /partial rotary/, 'llama.rope.dimension_count');
        expectError(withMetadata((m) => m.set('llama.rope.scaling.type', 'yarn')), /yarn is not supported/, 'llama.rope.scaling.type');
        expectError(withMetadata((m) => m.set('llama.attention.layer_norm_rms_epsilon', -1)), /positive/, 'normEps');
      });

      it('optional keys: rope base, vocab size, kv heads, chat template, eot ids', () => {
        const file = withMetadata((m) => {
          m.set('llama.rope.freq_base', ggufTyped(GgufValueType.FLOAT32, 500000));
          m.set('llama.vocab_size', ggufTyped(GgufValueType.UINT32, 512));
          m.set('tokenizer.chat_template', '{{ messages }}');
          m.set('tokenizer.ggml.eot_token_id', ggufTyped(GgufValueType.UINT32, 3));
          m.delete('tokenizer.ggml.model');
        });
        const model = openGguf(file, {});
        model.close();
        assert.equal(model.config.ropeTheta, 500000);
        assert.equal(model.chatTemplate, '{{ messages }}');
        assert.deepEqual(model.eosIds, [2, 3]);
        assert.equal(model.tokenizer, undefined);
        const noKv = withMetadata((m) => m.delete('llama.attention.head_count_kv')); // kv heads default to heads
        expectError(noKv, /shape \[32, 64\] should be \[64, 64\]/, 'model.layers.0.self_attn.k_proj.weight');
      });
    });
  });
});
