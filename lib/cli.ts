#!/usr/bin/env node
/**
 * The `lowbit` command: run | tokenize | info | quantize | sharp | eval | synth. Scripts depend on
 * this contract: `run` writes only the generated text to stdout, streaming, and one summary line to
 * stderr; `eval` prints one JSON object to stdout; `quantize`, `sharp` and `synth` draw a progress
 * bar on stderr when it is a terminal and end with one summary line there. Every failure is one line
 * `lowbit: <message>` on stderr and exit code 1.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { ProgressBar } from './convert/progress';
import { quantizeModel } from './convert/quantize';
import { type SharpResult, sharpModel } from './convert/sharp';
import { SYNTH_SHAPE_NAMES, synthModel } from './convert/synth';
import { LowbitError } from './errors';
import { evaluateText } from './eval';
import { detectContainer, openModel } from './io';
import { type LowbitFileDescription, describeLowbitFile } from './io/lowbit-format';
import type { SharpLayout } from './io/sharp';
import { loadModel, type LowbitModel } from './model/model';
import { loadTokenizer, type Tokenizer } from './tokenizer';
import { LOWBIT_VERSION } from './version';

const USAGE = `Usage:
  lowbit run [model] --prompt TEXT [--max-tokens N] [--temperature T] [--seed S] [--tokenizer FILE]
             [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--context N] [--threads N]
      Generates text after the prompt; only the generated text goes to stdout.
      Without a model, runs the built-in demo model (stories260K).
  lowbit tokenize <model-or-tokenizer-file> --text TEXT [--bos]
      Prints the token ids as a JSON array.
  lowbit info <model> [--json]
      Prints the model's config and tensor formats (for lowbit files also the recipe and bytes per kind).
  lowbit quantize <in> <out> --bits 1|1.58|2|3|4 [--method exact|rtn|mse] [--group G]
             [--tensor-bits 'mlp.down=4,attn.*=3,*=2'] [--embeddings f16|f32] [--tokenizer FILE] [--threads N]
      Writes one lowbit file. --method exact (default) packs ParetoQ checkpoints exactly, in their own
      precision (fake-quantized weights, or latent weights + weight_clip_val); rtn and mse quantize float models.
  lowbit sharp <in> <out> [--schedule later-half|every-other|'3<2,4<2'] [--rank R|'gate=16,up=16,down=32']
             [--mats gate,up,down] [--init none|svd|cov] [--calib FILE] [--calib-tokens N] [--refine STEPS]
             [--refine-lr LR] [--bits 1|1.58|2|3|4 [--method exact|rtn|mse] [--group G]] [--recovery f32|f16]
             [--seed S] [--tokenizer FILE] [--threads N]
      Writes one lowbit file (format version 2) in which target layers reuse a reference layer's MLP
      weights (held once in memory) plus a low-rank recovery y = W_ref x + B (A x) per shared projection.
      Schedule default later-half, rank 16, init svd; cov and --refine (Single Layer Warmup) need --calib.
      With --bits every linear layer is quantized and the recovery is fitted to the quantized reference.
  lowbit eval <model> --text FILE [--ref MODEL] [--ctx N] [--activations f32|int8] [--threads N]
      Prints JSON: perplexity with ParetoQ's protocol (no BOS, non-overlapping blocks of ctx tokens,
      default min(1024, trained context)); with --ref also KL(ref || model) and top-1 agreement.
      Activations default to f32 (ParetoQ's numbers are with 16-bit activations).
  lowbit synth --shape ${SYNTH_SHAPE_NAMES.join('|')} --bits B --out FILE [--seed S] [--tokenizer FILE]
      Writes a random model in lowbit's format with weights on the ParetoQ grid.
  lowbit --version | --help`;

/** The demo model: in the package (installed from the tarball) or in ../shared (this repository). */
export function demoModelPath(): string {
  const candidates = [
    path.join(__dirname, '..', 'models', 'stories260K', 'stories260K.bin'),
    path.join(__dirname, '..', '..', 'shared', 'models', 'stories260K', 'stories260K.bin'),
  ];
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new LowbitError(`the demo model stories260K is not installed (looked in ${candidates.join(', ')})`, 'LOWBIT_BAD_FILE');
  return found;
}

type Values = Record<string, string | boolean | undefined>;

function parse(args: string[], options: NonNullable<ParseArgsConfig['options']>): { values: Values; positionals: string[] } {
  const { values, positionals } = parseArgs({ args, options, allowPositionals: true, strict: true });
  return { values: values as Values, positionals };
}

function numberOption(value: string | boolean | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value !== 'string' || value.trim() === '' || !Number.isFinite(n)) throw new TypeError(`--${name} needs a number, got '${value}'`);
  return n;
}

async function run(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    prompt: { type: 'string', default: '' }, 'max-tokens': { type: 'string' }, temperature: { type: 'string' },
    seed: { type: 'string' }, tokenizer: { type: 'string' }, 'top-k': { type: 'string' }, 'top-p': { type: 'string' },
    'min-p': { type: 'string' }, 'repeat-penalty': { type: 'string' }, context: { type: 'string' }, threads: { type: 'string' },
  });
  if (positionals.length > 1) throw new TypeError(`run takes one model, got ${positionals.length}: ${positionals.join(' ')}`);
  const modelPath = positionals[0] ?? demoModelPath();
  const model = await loadModel(modelPath, {
    tokenizer: values.tokenizer as string | undefined,
    threads: numberOption(values.threads, 'threads'),
    contextLength: numberOption(values.context, 'context'),
  });
  try {
    const generation = model.generate(values.prompt as string, {
      maxTokens: numberOption(values['max-tokens'], 'max-tokens'),
      temperature: numberOption(values.temperature, 'temperature'),
      seed: numberOption(values.seed, 'seed'),
      topK: numberOption(values['top-k'], 'top-k'),
      topP: numberOption(values['top-p'], 'top-p'),
      minP: numberOption(values['min-p'], 'min-p'),
      repeatPenalty: numberOption(values['repeat-penalty'], 'repeat-penalty'),
    });
    for await (const chunk of generation) process.stdout.write(chunk.text);
    const s = generation.stats!;
    process.stderr.write(
      `\n[lowbit] ${path.basename(modelPath)}: ${s.promptTokens} prompt tokens at ${s.prefillTokensPerSecond.toFixed(1)} tok/s, ` +
        `${s.generatedTokens} generated at ${s.decodeTokensPerSecond.toFixed(1)} tok/s (${model.info.formats ? formatsText(model.info.formats) : ''} linear tensors), ` +
        `finished: ${s.finishReason}\n`,
    );
  } finally {
    model.dispose();
  }
}

function formatsText(formats: Record<string, number | undefined>): string {
  return Object.entries(formats).map(([f, n]) => `${n} ${f}`).join(', ');
}

/** A tokenizer from a bare tokenizer file, or the one a model file carries or sits next to. */
function tokenizerOf(file: string): Tokenizer {
  const container = detectContainer(file);
  if (container !== undefined) {
    try {
      const source = openModel(file);
      try {
        if (source.tokenizer) return loadTokenizer(source.tokenizer, { bosId: source.bosId, eosIds: source.eosIds });
      } finally {
        source.close();
      }
    } catch (error) {
      if (container !== 'gguf') throw error;  // a vocabulary-only GGUF is read as a tokenizer below
    }
  }
  return loadTokenizer({ kind: 'file', path: file });
}

async function tokenize(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { text: { type: 'string' }, bos: { type: 'boolean', default: false } });
  if (positionals.length !== 1) throw new TypeError('tokenize needs one model or tokenizer file');
  if (typeof values.text !== 'string') throw new TypeError('tokenize needs --text TEXT');
  const tokenizer = tokenizerOf(positionals[0]);
  process.stdout.write(`${JSON.stringify(tokenizer.encode(values.text, { bos: values.bos as boolean }))}\n`);
}

/** `3<2, 4<3 share gate, up, down (ranks 16/16/32, init cov, 300 refine steps)` */
function sharpText(s: SharpLayout): string {
  return `${s.schedule.map((p) => `${p.target}<${p.reference}`).join(', ')} share ${s.mats.join(', ')} ` +
    `(ranks ${s.ranks.gate}/${s.ranks.up}/${s.ranks.down}, init ${s.init}${s.refine > 0 ? `, ${s.refine} refine steps` : ''})`;
}

/** Lines about a lowbit file's recipe and where its bytes go. */
function lowbitFileLines(file: LowbitFileDescription): string[] {
  const r = file.recipe, b = file.bytes;
  const rules = Array.isArray(r.tensorBits) && r.tensorBits.length > 0
    ? `, tensor bits ${r.tensorBits.map((rule: { pattern?: unknown; bits?: unknown }) => `${String(rule.pattern)}=${String(rule.bits)}`).join(',')}`
    : '';
  const kinds = ['attention', 'mlp', 'embeddings', 'head', 'norms', 'tokenizer', 'header'] as const;
  const weights = r.bits === null ? 'float weights as stored' : `${String(r.bits)}-bit, method ${String(r.method)}, group ${String(r.group)}`;
  return [
    `  lowbit file v${file.version}: ${String(r.tool)} ${weights}, embeddings ${String(r.embeddings)}${rules}`,
    ...(file.sharp ? [`  sharp: layers ${sharpText(file.sharp)}`] : []),
    `  made from ${String(r.source)} by lowbit ${String(r.lowbitVersion)} on ${String(r.date)}` +
      `${r.seed !== undefined ? `, seed ${String(r.seed)}` : ''}`,
    `  bytes: ${kinds.map((k) => `${k} ${b[k].toLocaleString('en-US')}`).join(', ')}; total ${b.total.toLocaleString('en-US')}`,
  ];
}

async function info(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { json: { type: 'boolean', default: false } });
  if (positionals.length !== 1) throw new TypeError('info needs one model');
  const model = await loadModel(positionals[0], { contextLength: 2 });
  try {
    const i = model.info;
    const file = i.container === 'lowbit' ? describeLowbitFile(positionals[0]) : undefined;
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ ...i, contextLength: undefined, kvCacheBytes: undefined, ...(file && { lowbit: file }) }, null, 2)}\n`);
      return;
    }
    const c = i.config;
    const lines = [
      `${i.path} (${i.container}, ${i.architecture})`,
      `  dim ${c.dim}, hidden ${c.hiddenDim}, layers ${c.nLayers}, heads ${c.nHeads} (kv ${c.nKvHeads}), head dim ${c.headDim}`,
      `  vocab ${c.vocabSize}, max positions ${c.maxSeqLen}, rope theta ${c.ropeTheta} (${c.ropeStyle}), norm eps ${c.normEps}` +
        `${c.tiedEmbeddings ? ', tied embeddings' : ''}`,
      `  parameters ${i.parameters.toLocaleString('en-US')}, ${(i.bytes / 2 ** 20).toFixed(2)} MiB in memory`,
      `  MLP: ${i.mlp.storedParameters.toLocaleString('en-US')} of ${i.mlp.logicalParameters.toLocaleString('en-US')} parameters stored` +
        ` (${mib(i.mlp.storedBytes)} of ${mib(i.mlp.logicalBytes)})${i.sharp ? `, ${percent(1 - i.mlp.storedParameters / i.mlp.logicalParameters)} saved by sharing` : ''}`,
      `  formats: ${formatsText(i.formats)}`,
      `  tokenizer: ${i.tokenizer.kind}, ${i.tokenizer.vocabSize} ids, bos ${i.tokenizer.bosId}, eos ${i.tokenizer.eosIds.join(' ')}`,
      ...(i.chatFormat ? [`  chat format: ${i.chatFormat}`] : []),
      ...(file ? lowbitFileLines(file) : []),
      '  tensors:',
      ...Object.entries(i.tensorFormats).map(([name, format]) => `    ${name}: ${format}`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    model.dispose();
  }
}

function stringOption(value: string | boolean | undefined, name: string, command: string, hint: string): string {
  if (typeof value !== 'string' || value === '') throw new TypeError(`${command} needs --${name} ${hint}`);
  return value;
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(2)} MiB`;
}

async function quantize(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    bits: { type: 'string' }, method: { type: 'string' }, group: { type: 'string' }, 'tensor-bits': { type: 'string' },
    embeddings: { type: 'string' }, tokenizer: { type: 'string' }, threads: { type: 'string' },
  });
  if (positionals.length !== 2) throw new TypeError(`quantize needs an input model and an output file, got ${positionals.length} paths`);
  const [input, output] = positionals;
  const bar = new ProgressBar(process.stderr, 'quantize');
  try {
    const result = await quantizeModel(input, output, {
      bits: stringOption(values.bits, 'bits', 'quantize', '1|1.58|2|3|4'),
      method: values.method as 'exact' | undefined,
      group: numberOption(values.group, 'group'),
      tensorBits: values['tensor-bits'] as string | undefined,
      embeddings: values.embeddings as 'f16' | undefined,
      tokenizer: values.tokenizer as string | undefined,
      threads: numberOption(values.threads, 'threads'),
      onProgress: bar.update,
    });
    const layers = Object.entries(result.formats).map(([f, n]) => `${n} ${f}`).join(', ');
    bar.finish(`[lowbit] wrote ${output}: ${mib(result.bytes)} (source weights ${mib(result.sourceWeightBytes)}: ` +
      `${(result.sourceWeightBytes / result.bytes).toFixed(2)}x); linear layers ${layers}; method ${result.recipe.method}; ` +
      `${result.seconds.toFixed(1)} s`);
  } catch (error) {
    bar.abandon();
    throw error;
  }
}

function percent(fraction: number): string {
  return `${(fraction * 100).toFixed(1)}%`;
}

function sharpSummary(output: string, result: SharpResult): string {
  const m = result.mlp, r = result.recipe;
  const weights = r.bits === null ? 'float weights' : `${String(r.bits)}-bit ${String(r.method)}`;
  return `[lowbit] wrote ${output}: ${mib(result.bytes)}; layers ${sharpText(result.layout)}; ${weights}; ` +
    `MLP parameters stored ${m.storedParameters.toLocaleString('en-US')} of ${m.logicalParameters.toLocaleString('en-US')} ` +
    `(${percent(m.savedFraction)} saved); ${result.seconds.toFixed(1)} s`;
}

async function sharp(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    schedule: { type: 'string' }, rank: { type: 'string' }, mats: { type: 'string' }, init: { type: 'string' },
    calib: { type: 'string' }, 'calib-tokens': { type: 'string' }, refine: { type: 'string' }, 'refine-lr': { type: 'string' },
    bits: { type: 'string' }, method: { type: 'string' }, group: { type: 'string' }, recovery: { type: 'string' },
    seed: { type: 'string' }, tokenizer: { type: 'string' }, threads: { type: 'string' },
  });
  if (positionals.length !== 2) throw new TypeError(`sharp needs an input model and an output file, got ${positionals.length} paths`);
  const [input, output] = positionals;
  const bar = new ProgressBar(process.stderr, 'sharp');
  try {
    const result = await sharpModel(input, output, {
      schedule: values.schedule as string | undefined,
      rank: values.rank as string | undefined,
      mats: values.mats as string | undefined,
      init: values.init as 'svd' | undefined,
      calib: values.calib as string | undefined,
      calibTokens: numberOption(values['calib-tokens'], 'calib-tokens'),
      refine: numberOption(values.refine, 'refine'),
      refineLearningRate: numberOption(values['refine-lr'], 'refine-lr'),
      bits: values.bits as string | undefined,
      method: values.method as 'exact' | undefined,
      group: numberOption(values.group, 'group'),
      recovery: values.recovery as 'f32' | undefined,
      seed: numberOption(values.seed, 'seed'),
      tokenizer: values.tokenizer as string | undefined,
      threads: numberOption(values.threads, 'threads'),
      onProgress: bar.update,
    });
    bar.finish(sharpSummary(output, result));
  } catch (error) {
    bar.abandon();
    throw error;
  }
}

async function loadForEval(file: string, values: Values): Promise<LowbitModel> {
  return loadModel(file, {
    contextLength: 2,  // eval runs every block in its own context
    threads: numberOption(values.threads, 'threads'),
    activations: (values.activations as 'f32' | 'int8' | undefined) ?? 'f32',
  });
}

async function evaluate(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    text: { type: 'string' }, ref: { type: 'string' }, ctx: { type: 'string' }, activations: { type: 'string' }, threads: { type: 'string' },
  });
  if (positionals.length !== 1) throw new TypeError('eval needs one model');
  const textFile = stringOption(values.text, 'text', 'eval', 'FILE');
  let text: string;
  try {
    text = fs.readFileSync(textFile, 'utf8');
  } catch (error) {
    throw new LowbitError(`cannot read --text ${textFile}: ${(error as Error).message}`, 'LOWBIT_BAD_INPUT', { cause: error });
  }
  const model = await loadForEval(positionals[0], values);
  const ref = values.ref !== undefined ? await loadForEval(stringOption(values.ref, 'ref', 'eval', 'MODEL'), values).catch((error) => {
    model.dispose();
    throw error;
  }) : undefined;
  try {
    const result = await evaluateText(model, text, { ctx: numberOption(values.ctx, 'ctx'), ref });
    const activations = (values.activations as string | undefined) ?? 'f32';
    process.stdout.write(`${JSON.stringify({ model: positionals[0], ...(ref && { refModel: values.ref }), text: textFile, activations, ...result })}\n`);
  } finally {
    model.dispose();
    ref?.dispose();
  }
}

async function synth(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    shape: { type: 'string' }, bits: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' }, tokenizer: { type: 'string' },
  });
  if (positionals.length > 0) throw new TypeError(`synth takes no positional arguments, got ${positionals.join(' ')}`);
  const output = stringOption(values.out, 'out', 'synth', 'FILE');
  const shape = stringOption(values.shape, 'shape', 'synth', SYNTH_SHAPE_NAMES.join('|'));
  const bits = stringOption(values.bits, 'bits', 'synth', '1|1.58|2|3|4');
  const bar = new ProgressBar(process.stderr, 'synth');
  const started = performance.now();
  try {
    const bytes = await synthModel(output, {
      shape, bits, seed: numberOption(values.seed, 'seed'), tokenizer: values.tokenizer as string | undefined,
      onProgress: bar.update,
    });
    bar.finish(`[lowbit] wrote ${output}: ${shape} at ${bits} bits, ${mib(bytes)}, ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } catch (error) {
    bar.abandon();
    throw error;
  }
}

const COMMANDS: Record<string, (args: string[]) => Promise<void>> = { run, tokenize, info, quantize, sharp, eval: evaluate, synth };

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return command ? 0 : 1;
  }
  if (command === '--version') {
    process.stdout.write(`${LOWBIT_VERSION}\n`);
    return 0;
  }
  const handler = COMMANDS[command];
  if (!handler) {
    process.stderr.write(`lowbit: unknown command '${command}'\n${USAGE}\n`);
    return 1;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    // The usage of this command: its block of USAGE.
    const block = USAGE.split(/\n(?=  lowbit )/).find((b) => b.trimStart().startsWith(`lowbit ${command} `));
    process.stdout.write(`${block ?? USAGE}\n`);
    return 0;
  }
  try {
    await handler(rest);
    return 0;
  } catch (error) {
    const e = error as Error;
    const known = e instanceof LowbitError || e instanceof TypeError || e instanceof RangeError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`lowbit: ${known ? e.message : e.stack ?? String(e)}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
