// CPU feature detection (cpuid/xgetbv on x86, hwcaps on ARM) and core counts.
#pragma once

#include <string>

namespace lb {

struct cpu_features {
  std::string arch;  // "x64", "arm64" or "other"
  // x86
  std::string vendor;  // cpuid's vendor string ("AuthenticAMD", "GenuineIntel")
  int family = 0;      // display family (AMD Zen 4: 0x19, Zen 5: 0x1a), for tuning that differs by core
  bool avx2 = false, fma = false, f16c = false, bmi2 = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avx512vbmi = false, gfni = false;
  // ARM
  bool neon = false, dotprod = false, i8mm = false;
  int logical_cores = 1;
  int physical_cores = 1;  // cores usable by this process, one thread each
};

const cpu_features &cpu();

}  // namespace lb
