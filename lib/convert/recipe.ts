/**
 * What a conversion is asked for: bit widths and the format each maps to (ParetoQ's 1, 1.58, 2, 3
 * and 4 bits), and `--tensor-bits` rules that give some linear layers other widths.
 */
import type { LayerRole } from '../io/llama';
import type { QuantFormat } from '../qtensor';
import { invalidParameter } from '../validate';

/** Bit widths and their formats (native/core/formats.h). */
export const BITS_FORMATS = { 1: 'b1', 1.58: 't158', 2: 'b2', 3: 'b3', 4: 'b4' } as const satisfies Record<number, QuantFormat>;
export type Bits = keyof typeof BITS_FORMATS;

const BITS_TEXT = 'one of 1, 1.58, 2, 3, 4';

/** A bit width given as a number or its text ('1.58'); anything else is a TypeError/RangeError. */
export function parseBits(name: string, value: unknown): Bits {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number') throw invalidParameter(name, BITS_TEXT, value);
  if (!Object.hasOwn(BITS_FORMATS, n)) throw invalidParameter(name, BITS_TEXT, value, true);
  return n as Bits;
}

export function formatOfBits(bits: Bits): QuantFormat {
  return BITS_FORMATS[bits];
}

/** Short names of the linear roles that rules match: `attn.q` ... `mlp.down`. */
export const LINEAR_SHORT_NAMES: Readonly<Partial<Record<LayerRole, string>>> = {
  'self_attn.q_proj': 'attn.q',
  'self_attn.k_proj': 'attn.k',
  'self_attn.v_proj': 'attn.v',
  'self_attn.o_proj': 'attn.o',
  'mlp.gate_proj': 'mlp.gate',
  'mlp.up_proj': 'mlp.up',
  'mlp.down_proj': 'mlp.down',
};

/** `PATTERN=BITS`: PATTERN is a glob (`*` matches anything) over `attn.q` or `layers.N.attn.q`. */
export interface TensorBitsRule {
  readonly pattern: string;
  readonly bits: Bits;
}

const RULES_TEXT = "rules PATTERN=BITS separated by commas (e.g. 'mlp.down=4,attn.*=3,*=2')";

/** Parses `--tensor-bits`, e.g. `mlp.down=4,attn.*=3,*=2`. */
export function parseTensorBits(text: unknown): TensorBitsRule[] {
  if (typeof text !== 'string') throw invalidParameter('tensorBits', RULES_TEXT, text);
  return text.split(',').map((item, i) => {
    const match = /^\s*([A-Za-z0-9_.*]+)\s*=\s*([0-9.]+)\s*$/.exec(item);
    if (!match) throw invalidParameter(`tensorBits rule ${i + 1}`, RULES_TEXT, item, true);
    return { pattern: match[1], bits: parseBits(`the bits of tensorBits rule '${match[1]}'`, match[2]) };
  });
}

/** Checks rules given as objects (the API form of `--tensor-bits`). */
export function checkTensorBits(value: unknown): TensorBitsRule[] {
  if (typeof value === 'string') return parseTensorBits(value);
  if (!Array.isArray(value)) throw invalidParameter('tensorBits', `${RULES_TEXT}, or an array of { pattern, bits }`, value);
  return value.map((rule, i) => {
    const pattern = (rule as TensorBitsRule | null)?.pattern;
    if (typeof pattern !== 'string' || !/^[A-Za-z0-9_.*]+$/.test(pattern)) throw invalidParameter(`tensorBits[${i}].pattern`, 'a glob such as mlp.down or attn.*', pattern);
    return { pattern, bits: parseBits(`tensorBits[${i}].bits`, (rule as TensorBitsRule).bits) };
  });
}

function globRegExp(pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
}

/** Which rules chose which tensors: `bitsFor` returns the first rule that matches, else `fallback`. */
export class TensorBitsMatcher {
  readonly #rules: readonly { rule: TensorBitsRule; re: RegExp }[];
  readonly #used = new Set<TensorBitsRule>();

  constructor(rules: readonly TensorBitsRule[], readonly fallback: Bits) {
    this.#rules = rules.map((rule) => ({ rule, re: globRegExp(rule.pattern) }));
  }

  bitsFor(layer: number, role: LayerRole): Bits {
    const short = LINEAR_SHORT_NAMES[role];
    if (short === undefined) throw new RangeError(`${role} is not a linear layer`);
    const hit = this.#rules.find(({ re }) => re.test(short) || re.test(`layers.${layer}.${short}`));
    if (hit === undefined) return this.fallback;
    this.#used.add(hit.rule);
    return hit.rule.bits;
  }

  /** Throws for a rule that chose no tensor (most likely a typo). */
  checkAllUsed(): void {
    const unused = this.#rules.find(({ rule }) => !this.#used.has(rule));
    if (unused !== undefined) {
      throw invalidParameter('tensorBits', 'patterns that match linear layers (attn.q|k|v|o, mlp.gate|up|down, optionally prefixed layers.N.)',
        `${unused.rule.pattern}=${unused.rule.bits}`, true);
    }
  }
}
