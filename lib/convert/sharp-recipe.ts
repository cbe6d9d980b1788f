/**
 * What a SHARP conversion is asked for: the schedule (which target layer reuses which reference
 * layer's MLP), the projections shared, and the rank of each one's recovery. Text forms are the
 * CLI's; the API also takes arrays and objects.
 */
import { MLP_PROJECTIONS, type MlpProjection, type SharpPair } from '../io/sharp';
import { invalidParameter } from '../validate';

/** Named schedules: `later-half` shares pairs in the later half, `every-other` every pair. */
export const SHARP_SCHEDULES = ['later-half', 'every-other'] as const;
export type SharpScheduleName = (typeof SHARP_SCHEDULES)[number];

const SCHEDULE_TEXT = `${SHARP_SCHEDULES.map((s) => `'${s}'`).join(', ')} or pairs TARGET<REFERENCE separated by commas (e.g. '3<2,4<2')`;

/**
 * Odd layers t reuse layer t - 1: `every-other` all of them, `later-half` those with t >= n/2
 * (the paper finds later layers share with less loss).
 */
function namedSchedule(name: SharpScheduleName, nLayers: number): SharpPair[] {
  const pairs: SharpPair[] = [];
  for (let t = 1; t < nLayers; t += 2) {
    if (name === 'every-other' || 2 * t >= nLayers) pairs.push({ target: t, reference: t - 1 });
  }
  return pairs;
}

function parsePairs(text: string): SharpPair[] {
  return text.split(',').map((item) => {
    const match = /^\s*(\d+)\s*<\s*(\d+)\s*$/.exec(item);
    if (!match) throw invalidParameter('schedule', SCHEDULE_TEXT, text, true);
    return { target: Number(match[1]), reference: Number(match[2]) };
  });
}

/**
 * The pairs of a schedule for a model of `nLayers` layers, ordered by target. Range and
 * consistency (a reference is no target, a target appears once) are checked with the layout
 * (sharpLayoutProblem).
 */
export function resolveSchedule(value: unknown, nLayers: number): SharpPair[] {
  let pairs: SharpPair[];
  if (typeof value === 'string') {
    pairs = (SHARP_SCHEDULES as readonly string[]).includes(value) ? namedSchedule(value as SharpScheduleName, nLayers) : parsePairs(value);
  } else if (Array.isArray(value)) {
    pairs = value.map((p, i) => {
      const { target, reference } = (p ?? {}) as Partial<SharpPair>;
      if (!Number.isSafeInteger(target) || !Number.isSafeInteger(reference)) throw invalidParameter(`schedule[${i}]`, 'a { target, reference } pair of layer indices', p);
      return { target: target!, reference: reference! };
    });
  } else {
    throw invalidParameter('schedule', SCHEDULE_TEXT, value);
  }
  return pairs.sort((a, b) => a.target - b.target);
}

/** The projections to share: `'gate,up,down'` or an array. */
export function resolveMats(value: unknown): MlpProjection[] {
  const items = typeof value === 'string' ? value.split(',').map((s) => s.trim()) : value;
  const expected = `projections among ${MLP_PROJECTIONS.join(', ')} (e.g. 'gate,up,down')`;
  if (!Array.isArray(items) || items.length === 0) throw invalidParameter('mats', expected, value);
  if (items.some((m) => !MLP_PROJECTIONS.includes(m as MlpProjection)) || new Set(items).size !== items.length) {
    throw invalidParameter('mats', `distinct ${expected}`, value, true);
  }
  return MLP_PROJECTIONS.filter((m) => items.includes(m));
}

const RANK_TEXT = "a rank (e.g. 16), or ranks per projection (e.g. 'gate=16,up=16,down=32')";

function rankValue(name: string, value: unknown): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number') throw invalidParameter(name, 'a whole number from 0', value);
  if (!Number.isSafeInteger(n) || n < 0) throw invalidParameter(name, 'a whole number from 0', value, true);
  return n;
}

/**
 * Recovery ranks per projection: one number for all, `'gate=16,down=32'` or `{ gate: 16 }` (the
 * others get `fallback`). Upper bounds depend on the model (sharpLayoutProblem checks them).
 */
export function resolveRanks(value: unknown, fallback: number): Record<MlpProjection, number> {
  const all = (rank: number) => ({ gate: rank, up: rank, down: rank });
  if (value === undefined) return all(fallback);
  if (typeof value === 'number' || (typeof value === 'string' && /^\s*\d+\s*$/.test(value))) return all(rankValue('rank', value));
  let entries: [string, unknown][];
  if (typeof value === 'string') {
    entries = value.split(',').map((item) => {
      const match = /^\s*([a-z]+)\s*=\s*(\S+)\s*$/.exec(item);
      if (!match) throw invalidParameter('rank', RANK_TEXT, value, true);
      return [match[1], match[2]];
    });
  } else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    entries = Object.entries(value);
  } else {
    throw invalidParameter('rank', RANK_TEXT, value);
  }
  const ranks = all(fallback);
  for (const [mat, rank] of entries) {
    if (!MLP_PROJECTIONS.includes(mat as MlpProjection)) throw invalidParameter('rank', `ranks of ${MLP_PROJECTIONS.join(', ')}`, mat, true);
    ranks[mat as MlpProjection] = rankValue(`the rank of ${mat}`, rank);
  }
  return ranks;
}
