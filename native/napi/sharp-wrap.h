// sharpFit: the JS entry to SHARP's recovery fitting (native/sharp).
#pragma once

#include <napi.h>

namespace lb {
namespace napi {

Napi::Value SharpFit(const Napi::CallbackInfo &info);

}  // namespace napi
}  // namespace lb
