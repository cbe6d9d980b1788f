import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openHfDirectory } from '../../lib/io/hf';
import { EMBED_TOKENS, LM_HEAD, canonicalShapes, layerTensorName } from '../../lib/io/llama';
import { openLlama2c } from '../../lib/io/llama2c';
import type { ModelSource } from '../../lib/io/types';
import { hfConfigJson, interleavedBytes, permuteRowsForHf, unpermuteRowsFromHf, writeHfModel } from '../helpers/convert';
import { BUNDLED_MODELS, makeTempDir, modelPath, removeDir } from '../helpers/models';
import { f32Bytes } from '../helpers/quantize';
import { formatError } from '../helpers/errors';

/** Opens, checks with `check`, closes. */
function withModel(open: () => ModelSource, check: (model: ModelSource) => void): void {
  const model = open();
  try {
    check(model);
  } finally {
    model.close();
  }
}

describe('io/hf', () => {
  let dir: string;
  before(() => {
    dir = makeTempDir('hf');
  });
  after(() => removeDir(dir));

  it('permutes q/k rows exactly as convert_llama_weights_to_hf.py (rows 0..7 of one 8-row head)', () => {
    const rows = Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7]); // one byte per row
    // view(heads=1, 4, 2).transpose(1, 2): pairs (0,1) (2,3) ... → evens first, then odds
    assert.deepEqual([...permuteRowsForHf(rows, 1, 8)], [0, 2, 4, 6, 1, 3, 5, 7]);
    assert.deepEqual([...permuteRowsForHf(rows, 2, 8)], [0, 2, 1, 3, 4, 6, 5, 7]);
    assert.deepEqual(unpermuteRowsFromHf(permuteRowsForHf(rows, 2, 8), 2, 8), rows);
  });

  const formats = [
    { label: 'model.safetensors', options: { format: 'safetensors' as const } },
    { label: 'pytorch_model.bin', options: { format: 'pytorch' as const } },
    { label: '3 safetensors shards', options: { format: 'safetensors' as const, shards: 3 } },
    { label: '2 pytorch_model.bin shards (ZIP64)', options: { format: 'pytorch' as const, shards: 2, torch: { zip64: true } } },
  ];

  for (const bundled of BUNDLED_MODELS) {
    it(`${bundled.name}: written as a HF folder in every weight layout, reads back to the same tensors`, () => {
      withModel(
        () => openLlama2c(modelPath(bundled.bin)),
        (bin) => {
          for (const { label, options } of formats) {
            const folder = path.join(dir, `${bundled.name}-${label.replace(/\W+/g, '-')}`);
            writeHfModel(bin, folder, options);
            withModel(
              () => openHfDirectory(folder),
              (hf) => {
                assert.deepEqual({ ...hf.config, ropeStyle: 'interleaved' }, bin.config, label);
                assert.equal(hf.config.ropeStyle, 'half');
                assert.equal(hf.container, options.format);
                assert.deepEqual([...hf.tensors.keys()].sort(), [...bin.tensors.keys()].sort());
                for (const name of bin.tensors.keys()) {
                  assert.deepEqual(interleavedBytes(hf, name), bin.tensors.get(name)!.read(), `${label} ${name}`);
                }
                // the stored q really is in HF order
                const q = layerTensorName(0, 'self_attn.q_proj');
                assert.notDeepEqual(hf.tensors.get(q)!.read(), bin.tensors.get(q)!.read());
                assert.equal(hf.bosId, 1);
                assert.deepEqual(hf.eosIds, [2]);
                assert.equal(hf.metadata.get('model_type'), 'llama');
              },
            );
          }
        },
      );
    });
  }

  describe('config.json and friends', () => {
    let folder: string;
    let baseConfig: Record<string, unknown>;
    before(() => {
      folder = path.join(dir, 'config-tests');
      withModel(
        () => openLlama2c(modelPath('stories260K/stories260K.bin')),
        (bin) => {
          writeHfModel(bin, folder, { format: 'safetensors' });
          baseConfig = hfConfigJson(bin.config);
        },
      );
    });
    const writeConfig = (edit: (config: Record<string, unknown>) => void) => {
      const config = structuredClone(baseConfig);
      edit(config);
      fs.writeFileSync(path.join(folder, 'config.json'), JSON.stringify(config));
    };
    afterEach(() => {
      writeConfig(() => {});
      for (const side of ['generation_config.json', 'tokenizer_config.json', 'chat_template.jinja', 'tokenizer.model']) {
        fs.rmSync(path.join(folder, side), { force: true });
      }
    });

    it('defaults: kv heads = heads, head_dim = hidden / heads, eps 1e-6, theta 10000, untied', () => {
      writeConfig((c) => {
        for (const key of ['head_dim', 'rms_norm_eps', 'rope_theta', 'tie_word_embeddings', 'rope_scaling', 'bos_token_id', 'eos_token_id']) delete c[key];
      });
      // untied by default, and the folder has no lm_head
      formatError(() => openHfDirectory(folder), /missing tensor/, LM_HEAD);
      writeConfig((c) => {
        for (const key of ['head_dim', 'rms_norm_eps', 'rope_theta', 'num_key_value_heads']) delete c[key];
      });
      formatError(() => openHfDirectory(folder), /should be \[64, 64\]/, layerTensorName(0, 'self_attn.k_proj'));
      writeConfig((c) => {
        for (const key of ['head_dim', 'rms_norm_eps', 'rope_theta']) delete c[key];
      });
      withModel(
        () => openHfDirectory(folder),
        (hf) => {
          assert.equal(hf.config.headDim, 8);
          assert.equal(hf.config.normEps, 1e-6);
          assert.equal(hf.config.ropeTheta, 10000);
          assert.equal(hf.config.ropeScaling, undefined);
        },
      );
    });

    it('llama3 rope scaling, eos lists, generation_config.json eos winning', () => {
      writeConfig((c) => {
        c.rope_scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
        c.rope_theta = 500000;
        c.bos_token_id = 128000;
        c.eos_token_id = [128001, 128009];
      });
      withModel(
        () => openHfDirectory(folder),
        (hf) => {
          assert.deepEqual(hf.config.ropeScaling, { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 });
          assert.equal(hf.config.ropeTheta, 500000);
          assert.equal(hf.bosId, 128000);
          assert.deepEqual(hf.eosIds, [128001, 128009]);
        },
      );
      fs.writeFileSync(path.join(folder, 'generation_config.json'), JSON.stringify({ bos_token_id: 5, eos_token_id: 7 }));
      withModel(
        () => openHfDirectory(folder),
        (hf) => {
          assert.equal(hf.bosId, 128000);
          assert.deepEqual(hf.eosIds, [7]);
        },
      );
    });

    it('chat template from tokenizer_config.json (string or named list) or chat_template.jinja; tokenizer folder', () => {
      assert.equal(withTemplate(), undefined);
      fs.writeFileSync(path.join(folder, 'tokenizer_config.json'), JSON.stringify({ chat_template: '{{ a }}' }));
      assert.equal(withTemplate(), '{{ a }}');
      fs.writeFileSync(path.join(folder, 'tokenizer_config.json'), JSON.stringify({ chat_template: [{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D' }] }));
      assert.equal(withTemplate(), 'D');
      fs.writeFileSync(path.join(folder, 'chat_template.jinja'), 'J');
      assert.equal(withTemplate(), 'J');
      fs.writeFileSync(path.join(folder, 'tokenizer.model'), '');
      withModel(() => openHfDirectory(folder), (hf) => assert.deepEqual(hf.tokenizer, { kind: 'hf-dir', dir: folder }));
      withModel(() => openHfDirectory(folder, { tokenizer: '/t.model' }), (hf) => assert.deepEqual(hf.tokenizer, { kind: 'file', path: '/t.model' }));
      fs.writeFileSync(path.join(folder, 'tokenizer_config.json'), JSON.stringify({ chat_template: 3 }));
      fs.rmSync(path.join(folder, 'chat_template.jinja'));
      formatError(() => openHfDirectory(folder), /string or a list/, 'chat_template');

      function withTemplate(): string | undefined {
        let template: string | undefined;
        withModel(() => openHfDirectory(folder), (hf) => (template = hf.chatTemplate));
        return template;
      }
    });

    it('a stored lm_head is dropped when the config ties embeddings', () => {
      const tiedFolder = path.join(dir, 'tied-with-head');
      withModel(
        () => openLlama2c(modelPath('stories260K/stories260K.bin')),
        (bin) => {
          const embedding = bin.tensors.get(EMBED_TOKENS)!;
          writeHfModel(bin, tiedFolder, { format: 'safetensors', extraTensors: [{ name: LM_HEAD, dtype: 'f32', shape: embedding.shape, data: embedding.read() }] });
        },
      );
      withModel(() => openHfDirectory(tiedFolder), (hf) => assert.equal(hf.tensors.has(LM_HEAD), false));
    });

    it('errors name the key: missing sizes, bad types, unsupported architectures and features', () => {
      for (const key of ['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'vocab_size', 'max_position_embeddings']) {
        writeConfig((c) => delete c[key]);
        formatError(() => openHfDirectory(folder), /missing/, key);
      }
      const cases: [(c: Record<string, unknown>) => void, RegExp, string][] = [
        [(c) => (c.hidden_size = '64'), /expected a number/, 'hidden_size'],
        [(c) => (c.num_hidden_layers = 2.5), /expected an integer/, 'num_hidden_layers'],
        [(c) => (c.num_hidden_layers = 0), /positive integer/, 'nLayers'],
        [(c) => (c.tie_word_embeddings = 'yes'), /true or false/, 'tie_word_embeddings'],
        [(c) => (c.eos_token_id = [2, 'x']), /token id/, 'eos_token_id'],
        [(c) => (c.architectures = ['GPT2LMHeadModel']), /not a Llama architecture/, 'architectures'],
        [(c) => (c.model_type = 'qwen2'), /not supported/, 'model_type'],
        [(c) => (c.hidden_act = 'gelu'), /gelu is not supported/, 'hidden_act'],
        [(c) => (c.attention_bias = true), /biases/, 'attention_bias'],
        [(c) => (c.sliding_window = 4096), /sliding-window/, 'sliding_window'],
        [(c) => (c.rope_scaling = { type: 'yarn', factor: 4 }), /yarn is not supported/, 'rope_scaling'],
        [(c) => (c.rope_scaling = { rope_type: 'llama3', factor: 8 }), /needs a number low_freq_factor/, 'rope_scaling'],
        [(c) => ((c.hidden_size = 65), delete c.head_dim), /not a multiple of 8 heads/, 'num_attention_heads'],
        [(c) => (c.intermediate_size = 173), /should be \[173, 64\]/, layerTensorName(0, 'mlp.gate_proj')],
      ];
      for (const [edit, pattern, key] of cases) {
        writeConfig(edit);
        formatError(() => openHfDirectory(folder), pattern, key);
      }
      fs.writeFileSync(path.join(folder, 'config.json'), '{"hidden_size": 64,');
      formatError(() => openHfDirectory(folder), /invalid JSON/);
      fs.writeFileSync(path.join(folder, 'config.json'), '[]');
      formatError(() => openHfDirectory(folder), /JSON object/);
    });

    it('no weights, or no config', () => {
      const empty = path.join(dir, 'empty');
      fs.mkdirSync(empty);
      formatError(() => openHfDirectory(empty), /cannot open/);
      fs.writeFileSync(path.join(empty, 'config.json'), JSON.stringify(baseConfig));
      formatError(() => openHfDirectory(empty), /no weights found/);
    });
  });

  it('ParetoQ-style pytorch_model.bin: clip values [out, 1] pass through under their own names', () => {
    const folder = path.join(dir, 'paretoq');
    withModel(
      () => openLlama2c(modelPath('stories260K/stories260K.bin')),
      (bin) => {
        const shapes = canonicalShapes(bin.config);
        const clipValues = [...shapes].filter(([name]) => name.endsWith('_proj.weight')).map(([name, shape]) => ({
          name: name.replace(/weight$/, 'weight_clip_val'),
          dtype: 'f32' as const,
          shape: [shape[0], 1],
          data: f32Bytes(Array.from({ length: shape[0] }, (_, i) => 0.01 * (i + 1))),
        }));
        writeHfModel(bin, folder, { format: 'pytorch', extraTensors: clipValues, torch: { asParameters: true } });
        withModel(
          () => openHfDirectory(folder),
          (hf) => {
            assert.equal(hf.tensors.size, bin.tensors.size + clipValues.length);
            for (const clip of clipValues) {
              const tensor = hf.tensors.get(clip.name)!;
              assert.deepEqual(tensor.shape, clip.shape);
              assert.deepEqual(tensor.read(), clip.data);
            }
          },
        );
      },
    );
  });
});
