// NEON kernels for every ARMv8-A core (no dot product instructions). Matches kernels/ref/ref.cpp.
#include "neon-vec.h"

namespace lb {

const kernel_table &kernels_neon() {
  static const kernel_table table = simd::make_table<VecNeon<false>>(ISA_NEON);
  return table;
}

}  // namespace lb
