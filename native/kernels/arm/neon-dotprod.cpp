// NEON kernels with the ARMv8.2-A SDOT instruction (compiled with +dotprod, chosen at run time
// only on cores that report it). Matches kernels/ref/ref.cpp.
#include "neon-vec.h"

#if !defined(__ARM_FEATURE_DOTPROD)
#error "neon-dotprod.cpp must be compiled with -march=armv8.2-a+dotprod"
#endif

namespace lb {

const kernel_table &kernels_neon_dotprod() {
  static const kernel_table table = simd::make_table<VecNeon<true>>(ISA_NEON_DOTPROD);
  return table;
}

}  // namespace lb
