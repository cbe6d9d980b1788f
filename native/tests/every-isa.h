// Runs a test body once per kernel table this CPU supports (ref, then each SIMD ISA).
#pragma once

#include "../kernels/kernels.h"

namespace lbtest {

template <class Fn>
void for_each_isa(Fn fn) {
  for (int i = 0; i < lb::ISA_COUNT; i++)
    if (lb::isa_supported((lb::isa)i)) fn(lb::kernels_for((lb::isa)i));
}

}  // namespace lbtest
