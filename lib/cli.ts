#!/usr/bin/env node
/**
 * The `lowbit` command: run | tokenize | info. Scripts depend on this contract: `run` writes only
 * the generated text to stdout, streaming, and one summary line to stderr.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { LowbitError } from './errors';
import { detectContainer, openModel } from './io';
import { loadModel } from './model/model';
import { loadTokenizer, type Tokenizer } from './tokenizer';

const USAGE = `Usage:
  lowbit run [model] --prompt TEXT [--max-tokens N] [--temperature T] [--seed S] [--tokenizer FILE]
             [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--context N] [--threads N]
      Generates text after the prompt; only the generated text goes to stdout.
      Without a model, runs the built-in demo model (stories260K).
  lowbit tokenize <model-or-tokenizer-file> --text TEXT [--bos]
      Prints the token ids as a JSON array.
  lowbit info <model> [--json]
      Prints the model's config and tensor formats.
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
        `${s.generatedTokens} generated at ${s.decodeTokensPerSecond.toFixed(1)} tok/s (${model.info.formats ? formatsText(model.info.formats) : ''}), ` +
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

async function info(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { json: { type: 'boolean', default: false } });
  if (positionals.length !== 1) throw new TypeError('info needs one model');
  const model = await loadModel(positionals[0], { contextLength: 2 });
  try {
    const i = model.info;
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ ...i, contextLength: undefined, kvCacheBytes: undefined }, null, 2)}\n`);
      return;
    }
    const c = i.config;
    const lines = [
      `${i.path} (${i.container}, ${i.architecture})`,
      `  dim ${c.dim}, hidden ${c.hiddenDim}, layers ${c.nLayers}, heads ${c.nHeads} (kv ${c.nKvHeads}), head dim ${c.headDim}`,
      `  vocab ${c.vocabSize}, max positions ${c.maxSeqLen}, rope theta ${c.ropeTheta} (${c.ropeStyle}), norm eps ${c.normEps}` +
        `${c.tiedEmbeddings ? ', tied embeddings' : ''}`,
      `  parameters ${i.parameters.toLocaleString('en-US')}, ${(i.bytes / 2 ** 20).toFixed(2)} MiB in memory`,
      `  formats: ${formatsText(i.formats)}`,
      `  tokenizer: ${i.tokenizer.kind}, ${i.tokenizer.vocabSize} ids, bos ${i.tokenizer.bosId}, eos ${i.tokenizer.eosIds.join(' ')}`,
      ...(i.chatFormat ? [`  chat format: ${i.chatFormat}`] : []),
      '  tensors:',
      ...Object.entries(i.tensorFormats).map(([name, format]) => `    ${name}: ${format}`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    model.dispose();
  }
}

const COMMANDS: Record<string, (args: string[]) => Promise<void>> = { run, tokenize, info };

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return command ? 0 : 1;
  }
  if (command === '--version') {
    process.stdout.write(`${(require('../package.json') as { version: string }).version}\n`);
    return 0;
  }
  const handler = COMMANDS[command];
  if (!handler) {
    process.stderr.write(`lowbit: unknown command '${command}'\n${USAGE}\n`);
    return 1;
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
