/** Test environment helpers: seeded random numbers and what the running platform allows. */

export interface SeededRandom {
  /** Uniform in [0, 1). */
  uniform(): number;
  /** Standard normal (Box-Muller). */
  normal(): number;
}

/** mulberry32, deterministic per seed. */
export function seededRandom(seed: number): SeededRandom {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

/**
 * Whether a test may start a child node process. The arm64 run of the suite executes node under
 * qemu user emulation without binfmt, where a child `node` cannot start: it sets LOWBIT_NO_SPAWN.
 */
export function canSpawnNode(): boolean {
  return !process.env.LOWBIT_NO_SPAWN;
}
