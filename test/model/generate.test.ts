// The generation API: streaming equals complete(), seeds, stop sequences, abort within one token,
// a responsive event loop, statistics, lifecycle and argument errors.
import { strict as assert } from 'node:assert';
import { monitorEventLoopDelay } from 'node:perf_hooks';

import { DisposedError, loadModel, type LowbitModel } from '../../lib';
import { StopMatcher } from '../../lib/generate';
import { modelPath } from '../helpers/models';

const STORIES = modelPath('stories260K/stories260K.bin');

describe('model: generation API', () => {
  let model: LowbitModel;
  before(async () => {
    model = await loadModel(STORIES);
  });
  after(() => model.dispose());

  it('describes the model', () => {
    const i = model.info;
    assert.equal(i.architecture, 'llama');
    assert.equal(i.container, 'llama2c');
    assert.equal(i.config.dim, 64);
    // embedding (tied output) + per layer q, o (64x64), k, v (32x64), gate, up, down (172x64)
    assert.equal(i.parameters, 512 * 64 + 5 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 172 * 64));
    assert.deepEqual(i.formats, { f32: 36 });
    assert.ok(i.bytes >= i.parameters * 4);
    assert.equal(i.tokenizer.bosId, 1);
  });

  it('streams the same text complete() returns', async () => {
    const generation = model.generate('Once upon a time', { temperature: 0, maxTokens: 40 });
    let streamed = '';
    let tokens = 0;
    for await (const chunk of generation) {
      streamed += chunk.text;
      tokens += chunk.tokens.length;
    }
    assert.equal(streamed, generation.text);
    assert.equal(tokens, 40);
    assert.equal(await model.complete('Once upon a time', { temperature: 0, maxTokens: 40 }), streamed);
    const s = generation.stats!;
    assert.equal(s.promptTokens, 5);
    assert.equal(s.generatedTokens, 40);
    assert.equal(s.finishReason, 'length');
    assert.ok(s.prefillTokensPerSecond > 0 && s.decodeTokensPerSecond > 0);
  });

  it('reuses the cached prompt prefix', async () => {
    await model.complete('Once upon a time there', { temperature: 0, maxTokens: 3 });
    const generation = model.generate('Once upon a time there was', { temperature: 0, maxTokens: 3 });
    for await (const chunk of generation) void chunk;
    assert.ok(generation.stats!.cachedTokens >= 5, `cached ${generation.stats!.cachedTokens}`);
    // and the text equals a run with nothing cached
    const fresh = await loadModel(STORIES);
    try {
      assert.equal(await fresh.complete('Once upon a time there was', { temperature: 0, maxTokens: 3 }), generation.text);
    } finally {
      fresh.dispose();
    }
  });

  it('computes at most one token ahead of a slow consumer, and continues correctly after it stops', async () => {
    const prompt = model.tokenizer.encode('Once upon a time', { bos: true });
    const ids: number[] = [];
    for await (const chunk of model.generate(prompt, { temperature: 0, maxTokens: 30 })) ids.push(...chunk.tokens);
    assert.equal(ids.length, 30);
    // Take two tokens, then stall long enough for hundreds of unthrottled steps, then stop.
    const generation = model.generate(prompt, { temperature: 0, maxTokens: 30 });
    let taken = 0;
    for await (const chunk of generation) {
      assert.deepEqual(chunk.tokens, [ids[taken]]);
      if (++taken === 2) {
        await new Promise((resolve) => setTimeout(resolve, 300));
        break;
      }
    }
    // The cache then holds the prompt, the two tokens handed out and at most the one computed ahead.
    const next = model.generate([...prompt, ...ids], { temperature: 0, maxTokens: 1 });
    for await (const chunk of next) void chunk;
    const ahead = next.stats!.cachedTokens - prompt.length - 2;
    assert.ok(ahead >= 0 && ahead <= 1, `${ahead} tokens evaluated ahead of the consumer`);
    // and a generation resumed from that cache gives the same tokens as one from scratch
    const resumed: number[] = [];
    for await (const chunk of model.generate([...prompt, ...ids.slice(0, 2)], { temperature: 0, maxTokens: 28 })) resumed.push(...chunk.tokens);
    assert.deepEqual(resumed, ids.slice(2));
  });

  it('gives the same text for the same seed, and different text for other seeds', async () => {
    const opts = { temperature: 1, topK: 0, topP: 1, minP: 0, maxTokens: 60 };
    const a = await model.complete('Once upon a time', { ...opts, seed: 42 });
    const b = await model.complete('Once upon a time', { ...opts, seed: 42 });
    const c = await model.complete('Once upon a time', { ...opts, seed: 43 });
    assert.equal(a, b);
    assert.notEqual(a, c);
  });

  it('stops before a stop sequence', async () => {
    const full = await model.complete('Once upon a time', { temperature: 0, maxTokens: 60 });
    const stop = full.slice(20, 26);
    const generation = model.generate('Once upon a time', { temperature: 0, maxTokens: 60, stop: [stop] });
    for await (const chunk of generation) void chunk;
    assert.equal(generation.text, full.slice(0, full.indexOf(stop)));
    assert.equal(generation.stats!.finishReason, 'stop');
  });

  it('stops within one token of an abort and rejects with an AbortError', async () => {
    const controller = new AbortController();
    const generation = model.generate('Once upon a time', { temperature: 0, maxTokens: 400, signal: controller.signal });
    let after = 0;
    await assert.rejects(async () => {
      for await (const chunk of generation) {
        if (controller.signal.aborted) after += chunk.tokens.length;
        if (generation.stats === undefined && generation.text.length > 20 && !controller.signal.aborted) controller.abort();
      }
    }, (e: unknown) => e instanceof Error && e.name === 'AbortError');
    assert.ok(after <= 1, `${after} tokens after the abort`);
    assert.equal(generation.stats!.finishReason, 'abort');
    // an already aborted signal rejects before any work
    await assert.rejects(model.complete('x', { signal: AbortSignal.abort() }), { name: 'AbortError' });
    // and the model still works afterwards
    assert.ok((await model.complete('Once', { temperature: 0, maxTokens: 5 })).length > 0);
  });

  // A blocked loop stalls for about the whole generation. The bound is 20 ms, or a tenth of the
  // generation where that is longer: under qemu (the arm64 suite) a generation takes seconds and
  // the emulated main thread, sharing two cores with the decoding threads, waits for the host's
  // scheduler for tens of milliseconds at times.
  it('keeps the event loop responsive while generating (lag under 20 ms)', async () => {
    const lag = monitorEventLoopDelay({ resolution: 1 });
    lag.enable();
    const ticker = setInterval(() => undefined, 1);
    const start = performance.now();
    let elapsed = 0;
    try {
      await model.complete('Once upon a time', { temperature: 0.8, seed: 1, maxTokens: 400 });
      elapsed = performance.now() - start;
    } finally {
      clearInterval(ticker);
      lag.disable();
    }
    const bound = Math.max(20, elapsed / 10);
    assert.ok(lag.max / 1e6 < bound, `event loop lag up to ${(lag.max / 1e6).toFixed(1)} ms in ${elapsed.toFixed(0)} ms of generation`);
  });

  it('runs concurrent generations one after another', async () => {
    const [a, b] = await Promise.all([
      model.complete('Once upon a time', { temperature: 0, maxTokens: 20 }),
      model.complete('Once upon a time', { temperature: 0, maxTokens: 20 }),
    ]);
    assert.equal(a, b);
  });

  it('tokenizes and detokenizes', () => {
    const ids = model.tokenize('Once upon a time');
    assert.deepEqual(ids, [403, 407, 261, 378]);
    assert.equal(model.tokenize('Once upon a time', { bos: true })[0], 1);
    assert.equal(model.detokenize(ids), ' Once upon a time');
  });

  describe('bad arguments', () => {
    const cases: [string, () => unknown, RegExp | ErrorConstructor][] = [
      ['unknown option', () => model.generate('x', { temprature: 0 } as never), /Unknown option "temprature" for generate/],
      ['misspelled option', () => model.generate('x', { maxtokens: 3 } as never), /should be "maxTokens"/],
      ['negative temperature', () => model.generate('x', { temperature: -1 }), RangeError],
      ['topP above 1', () => model.generate('x', { topP: 2 }), RangeError],
      ['maxTokens 0', () => model.generate('x', { maxTokens: 0 }), RangeError],
      ['stop not strings', () => model.generate('x', { stop: [3] as never }), TypeError],
      ['signal not a signal', () => model.generate('x', { signal: {} as never }), TypeError],
      ['token out of range', () => model.generate([1, 99999]), RangeError],
      ['prompt of another type', () => model.generate(42 as never), TypeError],
    ];
    for (const [name, fn, expected] of cases) it(name, () => assert.throws(fn, expected as never));

    it('a prompt longer than the context', async () => {
      await using small = await loadModel(STORIES, { contextLength: 8 });
      await assert.rejects(small.complete('Once upon a time there was a little girl named Lily'), /the context holds 8/);
    });

    it('loadModel options', async () => {
      await assert.rejects(loadModel(STORIES, { threads: 0 }), RangeError);
      await assert.rejects(loadModel(STORIES, { kvCache: 'f8' as never }), RangeError);
      await assert.rejects(loadModel(STORIES, { contextSize: 4 } as never), /Unknown option "contextSize"/);
      await assert.rejects(loadModel(modelPath('stories260K/nope.bin')), { name: 'LowbitFormatError' });
    });
  });

  it('is unusable after dispose, and dispose is idempotent', async () => {
    const m = await loadModel(STORIES);
    m.dispose();
    m.dispose();
    assert.equal(m.disposed, true);
    assert.throws(() => m.generate('x'), DisposedError);
    await assert.rejects(m.logits([1]), DisposedError);
  });

  it('keeps an f16 KV cache by default (half of f32), within f16 rounding of an f32 cache', async () => {
    await using half = await loadModel(STORIES);
    await using full = await loadModel(STORIES, { kvCache: 'f32' });
    assert.equal(half.info.kvCacheBytes * 2, full.info.kvCacheBytes);
    const ids = half.tokenize('Once upon a time, there was a little girl', { bos: true });
    const [a, b] = [await half.logits(ids), await full.logits(ids)];
    let maxDiff = 0, maxAbs = 0;
    for (let i = 0; i < a.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
      maxAbs = Math.max(maxAbs, Math.abs(b[i]));
    }
    // f16 keys and values move logits by ~1e-3 of their scale, never 0 (the cache really is f16)
    assert.ok(maxDiff > 0 && maxDiff < 1e-2 * maxAbs, `${maxDiff} of ${maxAbs}`);
    const text = await half.complete('Once upon a time', { temperature: 0, maxTokens: 30 });
    assert.ok(text.startsWith(', there was a little girl'), text);
  });
});

describe('StopMatcher', () => {
  it('holds back a possible stop sequence and releases it when it does not complete', () => {
    const m = new StopMatcher(['END']);
    assert.deepEqual(m.push('abc E'), { emit: 'abc ', stopped: false });
    assert.deepEqual(m.push('N'), { emit: '', stopped: false });
    assert.deepEqual(m.push('x'), { emit: 'ENx', stopped: false });
    assert.deepEqual(m.push('..EN'), { emit: '..', stopped: false });
    assert.deepEqual(m.push('D tail'), { emit: '', stopped: true });
  });
});

describe('model: chat', () => {
  const CHATML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

  it('applies the chat template a Hugging Face folder carries', async () => {
    const { openModel } = await import('../../lib/io');
    const { writeHfModel } = await import('../helpers/convert');
    const { formatChat } = await import('../../lib/tokenizer');
    const { makeTempDir, removeDir } = await import('../helpers/models');
    const fs = await import('node:fs');
    const path = await import('node:path');
    const dir = makeTempDir('chat');
    try {
      const source = openModel(STORIES, { tokenizer: modelPath('stories260K/tok512.bin') });
      try {
        writeHfModel(source, dir, { format: 'safetensors' });
      } finally {
        source.close();
      }
      fs.copyFileSync(modelPath('stories260K/tok512.model'), path.join(dir, 'tokenizer.model'));
      fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: CHATML }));
      await using m = await loadModel(dir);
      assert.equal(m.info.chatFormat, 'chatml');
      const messages = [{ role: 'system' as const, content: 'Tell a story.' }, { role: 'user' as const, content: 'A cat.' }];
      const generation = m.chat(messages, { temperature: 0, maxTokens: 10 });
      for await (const chunk of generation) void chunk;
      const prompt = formatChat('chatml', messages, { addGenerationPrompt: true });
      assert.ok(prompt.startsWith('<|im_start|>system\nTell a story.<|im_end|>\n<|im_start|>user\n'));
      assert.equal(generation.stats!.promptTokens, m.tokenizer.encode(prompt, { parseSpecial: true }).length);
      assert.equal(generation.stats!.generatedTokens, 10);
    } finally {
      removeDir(dir);
    }
  });

  it('asks for a format when the model carries no template', async () => {
    await using m = await loadModel(STORIES);
    assert.equal(m.info.chatFormat, undefined);
    assert.throws(() => m.chat([{ role: 'user', content: 'hi' }]), /a chat format \('llama2', 'llama3', 'chatml'\)/);
    const generation = m.chat([{ role: 'user', content: 'hi' }], { format: 'llama2', temperature: 0, maxTokens: 3 });
    for await (const chunk of generation) void chunk;
    assert.equal(generation.stats!.generatedTokens <= 3, true);
  });
});
