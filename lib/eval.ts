/**
 * Perplexity with ParetoQ's protocol (research notes A9), and the divergence of a model from a
 * reference model over the same positions. The text is tokenized once without BOS, cut into
 * non-overlapping blocks of `ctx` tokens (the remainder is dropped), and every block is evaluated
 * in a fresh context: position i predicts token i + 1. PPL = exp(mean NLL over all predicted
 * positions of all blocks). Log-softmax is computed in float64 here, not in the runtime.
 */
import { LowbitError } from './errors';
import type { LowbitModel } from './model/model';
import { integerIn, invalidParameter, knownOptions, plainObject } from './validate';

/** Options of `evaluateText`. */
export interface EvaluateOptions {
  /** Tokens per block. Defaults to `min(1024, the model's trained context)`. */
  readonly ctx?: number;
  /** A reference model (same tokenizer) to measure KL(ref || model) and top-1 agreement against. Defaults to none. */
  readonly ref?: LowbitModel;
  /** Called after each block. Defaults to none. */
  readonly onBlock?: (done: number, total: number) => void;
}

const OPTIONS = ['ctx', 'ref', 'onBlock'] as const;

/** What `evaluateText` measured. */
export interface Evaluation {
  /** Tokens of the whole text. */
  readonly tokens: number;
  readonly ctx: number;
  readonly blocks: number;
  /** Predicted positions: blocks × (ctx − 1). */
  readonly positions: number;
  /** Mean negative log-likelihood (nats). */
  readonly nll: number;
  readonly perplexity: number;
  /** Present with a reference model. */
  readonly ref?: {
    readonly nll: number;
    readonly perplexity: number;
    /** Mean KL(ref || model) of the next-token distributions (nats). */
    readonly kl: number;
    /** Fraction of positions where both models' most likely token is the same. */
    readonly top1Agreement: number;
  };
}

/** Log-softmax of one row of logits, in float64. */
export function logSoftmax(logits: ArrayLike<number>, offset: number, vocab: number): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < vocab; i++) max = Math.max(max, logits[offset + i]);
  let sum = 0;
  for (let i = 0; i < vocab; i++) sum += Math.exp(logits[offset + i] - max);
  const logSum = max + Math.log(sum);
  const out = new Float64Array(vocab);
  for (let i = 0; i < vocab; i++) out[i] = logits[offset + i] - logSum;
  return out;
}

function argmax(values: Float64Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** KL(p || q) of two log-distributions. */
function klDivergence(logP: Float64Array, logQ: Float64Array): number {
  let kl = 0;
  for (let i = 0; i < logP.length; i++) {
    const p = Math.exp(logP[i]);
    if (p > 0) kl += p * (logP[i] - logQ[i]);
  }
  return kl;
}

/**
 * Fails unless both models tokenize alike: same kind, vocabulary size, pieces, and ids for `text`
 * (KL and agreement compare distributions over the same ids).
 */
export function checkSameTokenizer(model: LowbitModel, ref: LowbitModel, text: string): void {
  const a = model.tokenizer, b = ref.tokenizer;
  const differ = (why: string) =>
    new LowbitError(`the reference ${ref.info.path} does not share the tokenizer of ${model.info.path} (${why}); KL and agreement need the same vocabulary`, 'LOWBIT_BAD_INPUT');
  if (a.kind !== b.kind) throw differ(`${b.kind} vs ${a.kind}`);
  if (a.vocabSize !== b.vocabSize || model.info.config.vocabSize !== ref.info.config.vocabSize) {
    throw differ(`vocabulary ${ref.info.config.vocabSize} vs ${model.info.config.vocabSize}`);
  }
  for (let id = 0; id < a.vocabSize; id++) {
    if (a.decode([id]) !== b.decode([id])) throw differ(`token ${id} is ${JSON.stringify(b.decode([id]))} vs ${JSON.stringify(a.decode([id]))}`);
  }
  const ids = a.encode(text), refIds = b.encode(text);
  if (ids.length !== refIds.length || ids.some((id, i) => id !== refIds[i])) throw differ('the text tokenizes differently');
}

function resolveOptions(model: LowbitModel, options: unknown): { ctx: number; ref?: LowbitModel; onBlock?: EvaluateOptions['onBlock'] } {
  const o = plainObject('options', options);
  knownOptions('evaluateText', o, OPTIONS);
  const maxCtx = model.info.config.maxSeqLen;
  const ctx = o.ctx === undefined ? Math.min(1024, maxCtx) : integerIn('ctx', o.ctx, 2, maxCtx);
  if (o.ref !== undefined && (typeof o.ref !== 'object' || o.ref === null || !('logits' in o.ref))) throw invalidParameter('ref', 'a LowbitModel', o.ref);
  if (o.onBlock !== undefined && typeof o.onBlock !== 'function') throw invalidParameter('onBlock', 'a function', o.onBlock);
  return { ctx, ref: o.ref as LowbitModel | undefined, onBlock: o.onBlock as EvaluateOptions['onBlock'] };
}

/**
 * Perplexity of `model` on `text` with ParetoQ's protocol; with `ref`, also KL(ref || model) and
 * top-1 agreement over the same positions. Throws a RangeError when the text is shorter than one
 * block, and a LowbitError (LOWBIT_BAD_INPUT) when `ref` has another tokenizer.
 */
export async function evaluateText(model: LowbitModel, text: string, options: EvaluateOptions = {}): Promise<Evaluation> {
  if (typeof text !== 'string') throw invalidParameter('text', 'a string', text);
  const { ctx, ref, onBlock } = resolveOptions(model, options);
  if (ref) checkSameTokenizer(model, ref, text);
  const ids = model.tokenize(text, { bos: false });
  const blocks = Math.floor(ids.length / ctx);
  if (blocks === 0) throw new RangeError(`Expected a text of at least ctx = ${ctx} tokens but received one of ${ids.length} tokens`);
  const vocab = model.info.config.vocabSize;
  let nll = 0, refNll = 0, kl = 0, agree = 0;
  for (let b = 0; b < blocks; b++) {
    const block = ids.slice(b * ctx, (b + 1) * ctx);
    const logits = await model.logits(block);
    const refLogits = ref ? await ref.logits(block) : undefined;
    for (let i = 0; i < ctx - 1; i++) {
      const logP = logSoftmax(logits, i * vocab, vocab);
      nll -= logP[block[i + 1]];
      if (refLogits) {
        const logR = logSoftmax(refLogits, i * vocab, vocab);
        refNll -= logR[block[i + 1]];
        kl += klDivergence(logR, logP);
        if (argmax(logR) === argmax(logP)) agree++;
      }
    }
    onBlock?.(b + 1, blocks);
  }
  const positions = blocks * (ctx - 1);
  return {
    tokens: ids.length, ctx, blocks, positions, nll: nll / positions, perplexity: Math.exp(nll / positions),
    ...(ref && { ref: { nll: refNll / positions, perplexity: Math.exp(refNll / positions), kl: kl / positions, top1Agreement: agree / positions } }),
  };
}
