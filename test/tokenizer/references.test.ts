/** The tokenizers of the test models against llama2.c's reference generations (references.json). */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadTokenizer, type Tokenizer } from '../../lib/tokenizer';
import { MODELS_DIR, modelPath, readReferences } from '../helpers/models';

/** Text run.c prints for generated ids: it stops at BOS (the story separator), which prints nothing. */
function continuationOf(tokenizer: Tokenizer, generated: readonly number[], stoppedOnBos: boolean): string {
  if (stoppedOnBos) assert.equal(generated.at(-1), tokenizer.bosId);
  return tokenizer.decode(stoppedOnBos ? generated.slice(0, -1) : generated);
}

describe('tokenizer: references.json', () => {
  for (const reference of readReferences()) {
    // The llama2.c tokenizer, its SentencePiece original when there is one, and the GGUF copy.
    const files = [reference.tokenizer, reference.tokenizer.replace(/\.bin$/, '.model'), reference.sameWeightsGguf]
      .map((file) => modelPath(file))
      .filter((file, i) => i !== 1 || fs.existsSync(file));

    describe(reference.model, () => {
      for (const file of files) {
        const name = path.relative(MODELS_DIR, file);
        const tokenizer = (): Tokenizer => loadTokenizer({ kind: 'file', path: file });

        it(`${name}: BOS + encode(prompt) equals promptTokens`, () => {
          const t = tokenizer();
          assert.equal(t.bosId, 1);
          assert.deepEqual(t.eosIds, [2]);
          assert.deepEqual(t.encode(reference.prompt, { bos: true }), reference.promptTokens);
        });

        it(`${name}: decode(generatedTokens) equals the continuation, streamed or not`, () => {
          const t = tokenizer();
          const expected = continuationOf(t, reference.generatedTokens, reference.stoppedOnBos);
          assert.equal(expected, reference.continuation);
          const stream = t.createStreamDecoder();
          const streamed = reference.generatedTokens.map((id) => stream.push(id)).join('') + stream.flush();
          assert.equal(streamed, t.decode(reference.generatedTokens));
        });

        it(`${name}: the whole sequence decodes to prompt + continuation`, () => {
          const t = tokenizer();
          const ids = [...reference.promptTokens, ...reference.generatedTokens];
          assert.equal(t.decode(ids, { skipSpecial: true }), reference.prompt + reference.continuation);
        });
      }
    });
  }

  it('BOS ends a llama2.c story: a trailing 1 prints nothing', () => {
    const t = loadTokenizer({ kind: 'file', path: modelPath('stories260K/tok512.bin') });
    const ids = t.encode('The end.'); // ' The end.' with its dummy-prefix space
    assert.equal(continuationOf(t, [...ids, 1], true), ' The end.');
    assert.equal(t.decode([...ids, 1], { skipSpecial: true }), ' The end.');
  });
});
