// sharpFit: SHARP's recovery fitting (native/sharp) for JS, off the event loop. Weights and
// calibration inputs arrive as Float32Arrays (copied), factors and reports leave as new ones.
#include "sharp-wrap.h"

#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../core/pool.h"
#include "../sharp/fit.h"
#include "async.h"

namespace lb {
namespace napi {

namespace {

using sharp::dmat;

const char *const kProjNames[sharp::PROJ_COUNT] = {"gate", "up", "down"};

Napi::Object object_field(Napi::Env env, const Napi::Object &o, const std::string &key) {
  Napi::Value v = o.Get(key);
  if (!v.IsObject()) throw Napi::TypeError::New(env, key + " must be an object");
  return v.As<Napi::Object>();
}

double count_field(Napi::Env env, const Napi::Object &o, const std::string &key, double max) {
  Napi::Value v = o.Get(key);
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d <= max) || d != std::floor(d))
    throw Napi::RangeError::New(env, key + " must be an integer from 0 to " + std::to_string((int64_t)max));
  return d;
}

// A rows x cols matrix from a Float32Array of exactly that many values (empty when optional and absent).
dmat matrix_field(Napi::Env env, const Napi::Object &o, const std::string &key, int64_t rows, int64_t cols,
                  bool optional = false) {
  Napi::Value v = o.Get(key);
  if (optional && (v.IsUndefined() || v.IsNull())) return dmat();
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, key + " must be a Float32Array");
  Napi::Float32Array a = v.As<Napi::Float32Array>();
  if (cols <= 0 || a.ElementLength() % (size_t)cols != 0 || (rows >= 0 && a.ElementLength() != (size_t)(rows * cols)))
    throw Napi::RangeError::New(env, key + " has " + std::to_string(a.ElementLength()) + " values, not a whole " +
                                         (rows >= 0 ? std::to_string(rows) + " x " : std::string("n x ")) +
                                         std::to_string(cols));
  return sharp::dmat_from_floats(a.Data(), (int64_t)(a.ElementLength() / cols), cols);
}

sharp::layer_job job_arg(Napi::Env env, const Napi::Object &o) {
  sharp::layer_job j;
  j.layer = (int)count_field(env, o, "layer", 1e6);
  const int64_t dim = (int64_t)count_field(env, o, "dim", 1e6), hidden = (int64_t)count_field(env, o, "hidden", 1e6);
  const int64_t shapes[sharp::PROJ_COUNT][2] = {{hidden, dim}, {hidden, dim}, {dim, hidden}};
  const Napi::Object target = object_field(env, o, "target"), base = object_field(env, o, "base"),
                     rank = object_field(env, o, "rank");
  for (int p = 0; p < sharp::PROJ_COUNT; p++) {
    j.target[p] = matrix_field(env, target, kProjNames[p], shapes[p][0], shapes[p][1]);
    j.base[p] = matrix_field(env, base, kProjNames[p], shapes[p][0], shapes[p][1]);
    j.rank[p] = (int64_t)count_field(env, rank, kProjNames[p], 1e6);
  }
  j.ffn_in = matrix_field(env, o, "ffnIn", -1, dim, true);
  j.swiglu = matrix_field(env, o, "swiglu", j.ffn_in.rows, hidden, j.ffn_in.rows == 0);
  return j;
}

sharp::fit_options options_arg(Napi::Env env, const Napi::Object &o) {
  sharp::fit_options f;
  Napi::Value init = o.Get("init");
  if (!init.IsString() || !sharp::recovery_init_from_name(init.As<Napi::String>().Utf8Value().c_str(), &f.init))
    throw Napi::TypeError::New(env, "init must be 'none', 'svd' or 'cov'");
  f.refine.steps = (int)count_field(env, o, "refineSteps", 1e7);
  f.refine.batch = (int64_t)count_field(env, o, "batch", 1e9);
  f.seed = (uint64_t)count_field(env, o, "seed", 9007199254740991.0);
  Napi::Value lr = o.Get("learningRate");
  f.refine.learning_rate = lr.IsNumber() ? lr.As<Napi::Number>().DoubleValue() : -1;
  if (!(f.refine.learning_rate > 0 && f.refine.learning_rate < 1)) throw Napi::RangeError::New(env, "learningRate must be in (0, 1)");
  return f;
}

Napi::Float32Array floats_of(Napi::Env env, const dmat &m) {
  Napi::Float32Array a = Napi::Float32Array::New(env, m.v.size());
  sharp::dmat_to_floats(m, a.Data());
  return a;
}

Napi::Object fit_to_js(Napi::Env env, const sharp::layer_fit &f) {
  Napi::Object out = Napi::Object::New(env), recovery = Napi::Object::New(env), report = Napi::Object::New(env);
  for (int p = 0; p < sharp::PROJ_COUNT; p++) {
    if (!f.recovery[p].empty()) {
      Napi::Object ab = Napi::Object::New(env);
      ab.Set("a", floats_of(env, f.recovery[p].a));
      ab.Set("b", floats_of(env, f.recovery[p].b));
      recovery.Set(kProjNames[p], ab);
    }
    Napi::Object r = Napi::Object::New(env);
    r.Set("weightError", f.report[p].weight_error);
    r.Set("outputError", f.report[p].output_error);
    report.Set(kProjNames[p], r);
  }
  out.Set("recovery", recovery);
  out.Set("report", report);
  out.Set("lossShared", f.loss_shared);
  out.Set("lossInit", f.loss_init);
  out.Set("lossRefined", f.loss_refined);
  return out;
}

}  // namespace

// sharpFit({ layers: [{ layer, dim, hidden, target, base, rank, ffnIn?, swiglu? }], init,
//            refineSteps, learningRate, batch, seed, threads }) -> Promise<[{ recovery, report,
//            lossShared, lossInit, lossRefined }]>
Napi::Value SharpFit(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "expected a fit request");
  const Napi::Object request = info[0].As<Napi::Object>();
  Napi::Value layers = request.Get("layers");
  if (!layers.IsArray()) throw Napi::TypeError::New(env, "layers must be an array");
  auto jobs = std::make_shared<std::vector<sharp::layer_job>>();
  Napi::Array list = layers.As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); i++) {
    if (!list.Get(i).IsObject()) throw Napi::TypeError::New(env, "layers must hold objects");
    jobs->push_back(job_arg(env, list.Get(i).As<Napi::Object>()));
  }
  const sharp::fit_options options = options_arg(env, request);
  const double t = count_field(env, request, "threads", 1024);
  const int threads = t == 0 ? default_threads() : (int)t;
  return promise_worker<std::vector<sharp::layer_fit>>::start(
      env,
      [jobs, options, threads] {
        try {
          return sharp::fit_layers(*jobs, options, threads);
        } catch (const std::invalid_argument &e) {
          throw coded_error("LOWBIT_BAD_INPUT", e.what());
        }
      },
      [](Napi::Env env, std::vector<sharp::layer_fit> &fits) -> Napi::Value {
        Napi::Array out = Napi::Array::New(env, fits.size());
        for (size_t i = 0; i < fits.size(); i++) out.Set((uint32_t)i, fit_to_js(env, fits[i]));
        return out;
      });
}

}  // namespace napi
}  // namespace lb
