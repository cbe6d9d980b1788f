// A Promise-returning AsyncWorker: `work` runs on the libuv pool with no N-API access, `finish`
// builds the JS result on the main thread. Exceptions from `work` reject the promise with an
// Error carrying a string `code`; none escapes Execute().
#pragma once

#include <napi.h>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

namespace lb {
namespace napi {

// An error with a stable code for JS (e.g. LOWBIT_OFF_GRID).
struct coded_error : std::runtime_error {
  std::string code;
  coded_error(std::string c, const std::string &message) : std::runtime_error(message), code(std::move(c)) {}
};

Napi::Error make_error(Napi::Env env, const std::string &code, const std::string &message);
[[noreturn]] void throw_coded(Napi::Env env, const std::string &code, const std::string &message);

// The JS error code and message of the exception being handled (call inside a catch block).
struct native_error {
  std::string code, message;
};
inline native_error current_error() {
  try {
    throw;
  } catch (const coded_error &e) {
    return {e.code, e.what()};
  } catch (const std::domain_error &e) {  // unsupported instruction set (kernels/dispatch.cpp)
    return {"LOWBIT_UNSUPPORTED_ISA", e.what()};
  } catch (const std::bad_alloc &) {
    return {"LOWBIT_NATIVE", "out of memory"};
  } catch (const std::exception &e) {
    return {"LOWBIT_NATIVE", e.what()};
  } catch (...) {
    return {"LOWBIT_NATIVE", "unknown native error"};
  }
}

template <class Result>
class promise_worker : public Napi::AsyncWorker {
 public:
  using work_fn = std::function<Result()>;
  using finish_fn = std::function<Napi::Value(Napi::Env, Result &)>;

  static Napi::Promise start(Napi::Env env, work_fn work, finish_fn finish) {
    auto *w = new promise_worker(env, std::move(work), std::move(finish));
    Napi::Promise promise = w->deferred_.Promise();
    w->Queue();
    return promise;
  }

 private:
  promise_worker(Napi::Env env, work_fn work, finish_fn finish)
      : Napi::AsyncWorker(env, "lowbit"), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), finish_(std::move(finish)) {}

  void Execute() override {
    try {
      result_ = work_();
    } catch (...) {
      native_error e = current_error();
      code_ = e.code;
      SetError(e.message);
    }
  }
  void OnOK() override {
    Napi::HandleScope scope(Env());
    try {
      deferred_.Resolve(finish_(Env(), result_));
    } catch (const Napi::Error &e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error &e) override {
    Napi::HandleScope scope(Env());
    deferred_.Reject(make_error(Env(), code_, e.Message()).Value());
  }

  Napi::Promise::Deferred deferred_;
  work_fn work_;
  finish_fn finish_;
  Result result_{};
  std::string code_;
};

}  // namespace napi
}  // namespace lb
