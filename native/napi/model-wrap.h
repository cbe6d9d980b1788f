// AddonModel, AddonContext and AddonSampler: JS handles of a native model, one sequence's KV
// cache, and a sampler. Shapes and names are validated in lib/model; here only enough to keep
// native code safe.
#pragma once

#include <napi.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "../model/model.h"
#include "../model/sampler.h"

namespace lb {
namespace napi {

class AddonModel : public Napi::ObjectWrap<AddonModel> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit AddonModel(const Napi::CallbackInfo &info);
  ~AddonModel() override;
  std::shared_ptr<const model> get(Napi::Env env) const;

 private:
  Napi::Value Dispose(const Napi::CallbackInfo &info);
  Napi::Value Info(const Napi::CallbackInfo &info);
  std::shared_ptr<const model> model_;
  int64_t reported_bytes_ = 0;
};

// A context and what keeps it valid while a worker uses it.
struct context_state {
  std::shared_ptr<const model> m;
  context ctx;
  mlp_recorder recorder;  // in use while ctx.recorder points at it
  std::atomic<bool> abort{false};
  std::atomic<bool> busy{false};
  // generate()'s flow control: the loop may have produced at most `allowed` tokens; JS raises
  // it as its consumer asks for more (allow()), so the loop runs one token ahead, no further.
  std::mutex flow_mutex;
  std::condition_variable flow;
  int64_t allowed = 0;
};

class AddonContext : public Napi::ObjectWrap<AddonContext> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit AddonContext(const Napi::CallbackInfo &info);
  ~AddonContext() override;

 private:
  Napi::Value Eval(const Napi::CallbackInfo &info);
  Napi::Value Generate(const Napi::CallbackInfo &info);
  Napi::Value Allow(const Napi::CallbackInfo &info);
  Napi::Value Truncate(const Napi::CallbackInfo &info);
  Napi::Value Tokens(const Napi::CallbackInfo &info);
  Napi::Value Abort(const Napi::CallbackInfo &info);
  Napi::Value RecordMlp(const Napi::CallbackInfo &info);
  Napi::Value RecordedMlp(const Napi::CallbackInfo &info);
  Napi::Value Dispose(const Napi::CallbackInfo &info);
  std::shared_ptr<context_state> live(Napi::Env env) const;
  std::shared_ptr<context_state> state_;
  int64_t reported_bytes_ = 0;
};

class AddonSampler : public Napi::ObjectWrap<AddonSampler> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit AddonSampler(const Napi::CallbackInfo &info);
  std::shared_ptr<sampler> get() const { return sampler_; }

 private:
  Napi::Value Sample(const Napi::CallbackInfo &info);
  std::shared_ptr<sampler> sampler_;
};

}  // namespace napi
}  // namespace lb
