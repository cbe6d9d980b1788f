// Per-environment state of the addon (no mutable globals: worker threads each get their own).
#pragma once

#include <napi.h>

#include <new>
#include <stdexcept>

#include "../kernels/kernels.h"
#include "async.h"

namespace lb {
namespace napi {

struct addon_state {
  Napi::FunctionReference qtensor_ctor;
  Napi::FunctionReference model_ctor;
  Napi::FunctionReference context_ctor;
  Napi::FunctionReference sampler_ctor;
};

addon_state &addon_data(Napi::Env env);

// The kernels an optional ISA name argument selects (undefined: the active ones).
const kernel_table &kernels_arg(Napi::Env env, const Napi::Value &v);

// Runs fn, turning native exceptions into JS errors with a code (for synchronous bindings).
template <class Fn>
auto guarded(Napi::Env env, Fn fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error &) {
    throw;
  } catch (...) {
    native_error e = current_error();
    throw_coded(env, e.code, e.message);
  }
}

}  // namespace napi
}  // namespace lb
