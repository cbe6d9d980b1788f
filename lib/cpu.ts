/** What the CPU offers and which kernels lowbit runs on it. */
import { type AddonCpuInfo, binding, callNative } from './native';

export type { IsaName } from './native';

/**
 * `arch` (`x64`, `arm64` or `other`); on x64, `vendor` and `family` from cpuid (some kernels tune
 * for the core: docs/KERNELS.md); `features` detected by cpuid / hwcaps (avx512vnni, dotprod ...);
 * `physicalCores` and `logicalCores`; `defaultThreads` (the physical cores, used when an option
 * leaves threads unset); `isa`, the kernels in use (the best the CPU supports, or
 * LOWBIT_ISA when set); `isas`, every kernel set this CPU can run; `interleavedIsas`, those with
 * the interleaved GEMV (loaded models store their quantized layer weights interleaved there).
 */
export type CpuInfo = AddonCpuInfo;

/** Features of this CPU and the kernel set chosen for it. Throws if LOWBIT_ISA names one it cannot run. */
export function cpuInfo(): CpuInfo {
  return callNative(() => binding().cpuInfo());
}
