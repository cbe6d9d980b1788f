// Picks the kernel table once per process from the CPU's features, or from LOWBIT_ISA.
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "../core/cpu.h"
#include "kernels.h"

namespace lb {

static const char *const kIsaNames[ISA_COUNT] = {"ref", "avx2", "avx512", "neon", "neon-dotprod"};

const char *isa_name(isa i) { return kIsaNames[i]; }

bool isa_from_name(const char *name, isa *out) {
  for (int i = 0; i < ISA_COUNT; i++) {
    if (std::strcmp(kIsaNames[i], name) == 0) {
      *out = (isa)i;
      return true;
    }
  }
  return false;
}

bool isa_supported(isa i) {
  const cpu_features &c = cpu();
  switch (i) {
    case ISA_REF: return true;
#if defined(__x86_64__)
    case ISA_AVX2: return c.avx2 && c.fma && c.f16c;
    case ISA_AVX512:
      return c.avx512f && c.avx512bw && c.avx512vl && c.avx512dq && c.avx512vnni && c.avx512vbmi &&
             c.gfni && c.fma && c.f16c;
#endif
#if defined(__aarch64__)
    case ISA_NEON: return c.neon;
    case ISA_NEON_DOTPROD: return c.neon && c.dotprod;
#endif
    default: return false;
  }
}

// What an unsupported ISA needs, for the error message.
static const char *isa_requirement(isa i) {
  switch (i) {
    case ISA_AVX2: return "an x86-64 CPU with AVX2, FMA and F16C";
    case ISA_AVX512: return "an x86-64 CPU with AVX-512 F/BW/VL/DQ/VNNI/VBMI and GFNI (Ice Lake, Zen 4 or later)";
    case ISA_NEON: return "an AArch64 CPU";
    case ISA_NEON_DOTPROD: return "an AArch64 CPU with the dot product extension (ARMv8.2-A dotprod)";
    default: return "";
  }
}

const kernel_table &kernels_for(isa i) {
  if (!isa_supported(i))
    throw std::domain_error(std::string("instruction set '") + isa_name(i) + "' is not available: it needs " +
                             isa_requirement(i));
  switch (i) {
#if defined(__x86_64__)
    case ISA_AVX2: return kernels_avx2();
    case ISA_AVX512: return kernels_avx512();
#endif
#if defined(__aarch64__)
    case ISA_NEON: return kernels_neon();
    case ISA_NEON_DOTPROD: return kernels_neon_dotprod();
#endif
    default: return kernels_ref();
  }
}

static isa best_isa() {
  for (int i = ISA_COUNT - 1; i > ISA_REF; i--)
    if (isa_supported((isa)i)) return (isa)i;
  return ISA_REF;
}

static const kernel_table &pick_kernels() {
  const char *env = std::getenv("LOWBIT_ISA");
  isa choice = best_isa();
  if (env && *env && !isa_from_name(env, &choice))
    throw std::domain_error(std::string("LOWBIT_ISA='") + env +
                             "' is not one of ref, avx2, avx512, neon, neon-dotprod");
  return kernels_for(choice);
}

const kernel_table &active_kernels() {
  static const kernel_table &table = pick_kernels();  // a throw leaves it to be retried
  return table;
}

}  // namespace lb
