/** What the CPU offers and which kernels lowbit runs on it. */
import { binding, callNative, type IsaName } from './native';

export type { IsaName } from './native';

export interface CpuInfo {
  /** `x64`, `arm64` or `other`. */
  arch: string;
  /** Instruction-set features detected (cpuid / hwcaps), e.g. avx512vnni, dotprod. */
  features: Record<string, boolean>;
  physicalCores: number;
  logicalCores: number;
  /** Threads used when an option leaves them unset: the physical cores. */
  defaultThreads: number;
  /** Kernels in use: the best the CPU supports, or LOWBIT_ISA when set. */
  isa: IsaName;
  /** Every kernel set this CPU can run. */
  isas: IsaName[];
}

/** Features of this CPU and the kernel set chosen for it. Throws if LOWBIT_ISA names one it cannot run. */
export function cpuInfo(): CpuInfo {
  return callNative(() => binding().cpuInfo());
}
