// AddonQTensor: the JS handle of a native QTensor (the only code that knows both). Argument
// validation with friendly messages happens in lib/qtensor.ts; the checks here only keep bad
// calls from reaching native code.
#pragma once

#include <napi.h>

#include "../core/qtensor.h"

namespace lb {
namespace napi {

class AddonQTensor : public Napi::ObjectWrap<AddonQTensor> {
 public:
  static Napi::Function Define(Napi::Env env);
  // A new JS object holding t; `owns` reports t's storage to V8 as external memory (not views).
  static Napi::Object Create(Napi::Env env, qtensor t, bool owns = true);
  // The tensor behind a JS AddonQTensor, or a TypeError.
  static const qtensor &From(Napi::Env env, Napi::Value v);
  // Disposes the handle v once its tensor has been taken (by a model, which then owns the storage
  // alone and may move or rewrite it); consuming a handle twice is fine.
  static void Consume(Napi::Env env, Napi::Value v);

  explicit AddonQTensor(const Napi::CallbackInfo &info);
  ~AddonQTensor() override;

 private:
  static Napi::Value Quantize(const Napi::CallbackInfo &info);
  static Napi::Value QuantizeAsync(const Napi::CallbackInfo &info);
  static Napi::Value FromPacked(const Napi::CallbackInfo &info);
  static Napi::Value FromCodes(const Napi::CallbackInfo &info);

  Napi::Value Dequantize(const Napi::CallbackInfo &info);
  Napi::Value Matmul(const Napi::CallbackInfo &info);
  Napi::Value MatmulSync(const Napi::CallbackInfo &info);
  Napi::Value Packed(const Napi::CallbackInfo &info);
  Napi::Value Scales(const Napi::CallbackInfo &info);
  Napi::Value Codes(const Napi::CallbackInfo &info);
  Napi::Value View(const Napi::CallbackInfo &info);
  Napi::Value Interleaved(const Napi::CallbackInfo &info);
  Napi::Value Dispose(const Napi::CallbackInfo &info);
  Napi::Value Info(const Napi::CallbackInfo &info);

  const qtensor &live(Napi::Env env) const;
  void set(Napi::Env env, qtensor t, bool owns);
  void release(Napi::Env env);

  qtensor tensor_;
  bool alive_ = false;
  int64_t reported_bytes_ = 0;  // external memory reported to V8
};

}  // namespace napi
}  // namespace lb
