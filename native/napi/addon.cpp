// Module entry: registers AddonQTensor and the plain functions (cpuInfo, formats, bench probes).
#include "addon.h"

#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "../core/cpu.h"
#include "../core/pool.h"
#include "../kernels/kernels.h"
#include "model-wrap.h"
#include "qtensor-wrap.h"
#include "sharp-wrap.h"

namespace lb {
namespace napi {

addon_state &addon_data(Napi::Env env) { return *env.GetInstanceData<addon_state>(); }

Napi::Error make_error(Napi::Env env, const std::string &code, const std::string &message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

void throw_coded(Napi::Env env, const std::string &code, const std::string &message) {
  throw make_error(env, code, message);
}

const kernel_table &kernels_arg(Napi::Env env, const Napi::Value &v) {
  if (v.IsUndefined() || v.IsNull()) return guarded(env, [] { return std::cref(active_kernels()); }).get();
  isa i;
  if (!v.IsString() || !isa_from_name(v.As<Napi::String>().Utf8Value().c_str(), &i))
    throw Napi::TypeError::New(env, "isa must be one of ref, avx2, avx512, neon, neon-dotprod");
  return guarded(env, [&] { return std::cref(kernels_for(i)); }).get();
}

namespace {

// cpuInfo() -> { arch, vendor, family, features, physicalCores, logicalCores, isa, isas, interleavedIsas }
Napi::Value CpuInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const cpu_features &c = cpu();
  Napi::Object o = Napi::Object::New(env);
  o.Set("arch", c.arch);
  o.Set("vendor", c.vendor);
  o.Set("family", c.family);
  Napi::Object f = Napi::Object::New(env);
  const std::pair<const char *, bool> flags[] = {
      {"avx2", c.avx2}, {"fma", c.fma}, {"f16c", c.f16c}, {"bmi2", c.bmi2}, {"avx512f", c.avx512f},
      {"avx512bw", c.avx512bw}, {"avx512vl", c.avx512vl}, {"avx512dq", c.avx512dq},
      {"avx512vnni", c.avx512vnni}, {"avx512vbmi", c.avx512vbmi}, {"gfni", c.gfni}, {"neon", c.neon},
      {"dotprod", c.dotprod}, {"i8mm", c.i8mm}};
  for (const auto &flag : flags) f.Set(flag.first, flag.second);
  o.Set("features", f);
  o.Set("physicalCores", c.physical_cores);
  o.Set("logicalCores", c.logical_cores);
  o.Set("defaultThreads", default_threads());
  o.Set("isa", isa_name(kernels_arg(env, env.Undefined()).id));
  Napi::Array isas = Napi::Array::New(env);
  for (int i = 0; i < ISA_COUNT; i++)
    if (isa_supported((isa)i)) isas.Set(isas.Length(), isa_name((isa)i));
  o.Set("isas", isas);
  Napi::Array interleaved = Napi::Array::New(env);  // ISAs with the interleaved GEMV (short rows)
  for (int i = 0; i < ISA_COUNT; i++)
    if (isa_supported((isa)i) && kernels_for((isa)i).gemv_interleaved[FORMAT_B2]) interleaved.Set(interleaved.Length(), isa_name((isa)i));
  o.Set("interleavedIsas", interleaved);
  return o;
}

// formats() -> [{ name, bitsPerWeight, quantized, codeBits, codes, offset, planeBits }]
Napi::Value Formats(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  for (int i = 0; i < FORMAT_COUNT; i++) {
    const format_traits &t = traits((format)i);
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", t.name);
    o.Set("bitsPerWeight", t.bits_per_weight);
    o.Set("quantized", t.quantized);
    o.Set("codeBits", t.code_bits);
    o.Set("codes", t.n_codes);
    o.Set("offset", t.offset);
    Napi::Array planes = Napi::Array::New(env);
    for (int p = 0; p < t.n_planes; p++) planes.Set(p, t.plane_bits[p]);
    o.Set("planeBits", planes);
    out.Set(i, o);
  }
  return out;
}

int count_arg(Napi::Env env, const Napi::Value &v, const char *name) {
  if (!v.IsNumber() || v.As<Napi::Number>().DoubleValue() < 1)
    throw Napi::RangeError::New(env, std::string(name) + " must be a positive number");
  return v.As<Napi::Number>().Int32Value();
}

// measureRead(typed array, threads, minSeconds, isa?) -> seconds per pass (bench/): reads the
// caller's array in place, each thread its share
Napi::Value MeasureRead(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) throw Napi::TypeError::New(env, "measureRead needs a typed array");
  Napi::TypedArray data = info[0].As<Napi::TypedArray>();
  const int threads = count_arg(env, info[1], "threads");
  const double min_seconds = info[2].As<Napi::Number>().DoubleValue();
  const kernel_table &k = kernels_arg(env, info[3]);
  const uint8_t *bytes = static_cast<const uint8_t *>(data.ArrayBuffer().Data()) + data.ByteOffset();
  return Napi::Number::New(env, guarded(env, [&] { return measure_read_seconds(bytes, data.ByteLength(), threads, min_seconds, k); }));
}

// adviseHugePages(array): asks the OS to back the whole 2 MiB extents of a typed array's memory
// with huge pages, as tensors' storage is (call it before the array's pages are first touched), so
// a DRAM probe reads the kind of memory the kernels read
Napi::Value AdviseHugePages(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) throw Napi::TypeError::New(env, "adviseHugePages needs a typed array");
  Napi::TypedArray array = info[0].As<Napi::TypedArray>();
#if defined(__linux__)
  const uintptr_t start = reinterpret_cast<uintptr_t>(array.ArrayBuffer().Data()) + array.ByteOffset();
  const uintptr_t huge = aligned_buffer::kHugePage, from = (start + huge - 1) / huge * huge;
  const uintptr_t to = (start + array.ByteLength()) / huge * huge;
  if (to > from) madvise(reinterpret_cast<void *>(from), to - from, MADV_HUGEPAGE);
#endif
  return env.Undefined();
}

// runMatmuls(tensors[], x, n, threads, act, isa?) -> seconds per matmul: one matmul by each tensor
// in turn (bench/kernels times a pass of short kernels with one JS call)
Napi::Value RunMatmuls(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "tensors must be an array of QTensors");
  Napi::Array list = info[0].As<Napi::Array>();
  std::vector<const qtensor *> ws;
  for (uint32_t i = 0; i < list.Length(); i++) ws.push_back(&AddonQTensor::From(env, list.Get(i)));
  if (ws.empty()) throw Napi::RangeError::New(env, "no tensors");
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, "x must be a Float32Array");
  Napi::Float32Array x = info[1].As<Napi::Float32Array>();
  const int n = count_arg(env, info[2], "n"), threads = count_arg(env, info[3], "threads");
  for (const qtensor *w : ws)
    if (x.ElementLength() != (size_t)n * w->cols) throw Napi::RangeError::New(env, "x must hold n * cols values");
  const act_mode act = info[4].As<Napi::String>().Utf8Value() == "f32" ? ACT_F32 : ACT_Q8;
  const kernel_table &k = kernels_arg(env, info[5]);
  return Napi::Number::New(env, guarded(env, [&] { return run_matmuls(ws, x.Data(), n, act, threads, k); }));
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto *state = new addon_state();
  state->qtensor_ctor = Napi::Persistent(AddonQTensor::Define(env));
  state->model_ctor = Napi::Persistent(AddonModel::Define(env));
  state->context_ctor = Napi::Persistent(AddonContext::Define(env));
  state->sampler_ctor = Napi::Persistent(AddonSampler::Define(env));
  env.SetInstanceData<addon_state>(state);
  exports.Set("AddonQTensor", state->qtensor_ctor.Value());
  exports.Set("AddonModel", state->model_ctor.Value());
  exports.Set("AddonContext", state->context_ctor.Value());
  exports.Set("AddonSampler", state->sampler_ctor.Value());
  exports.Set("cpuInfo", Napi::Function::New<CpuInfo>(env, "cpuInfo"));
  exports.Set("formats", Napi::Function::New<Formats>(env, "formats"));
  exports.Set("measureRead", Napi::Function::New<MeasureRead>(env, "measureRead"));
  exports.Set("adviseHugePages", Napi::Function::New<AdviseHugePages>(env, "adviseHugePages"));
  exports.Set("runMatmuls", Napi::Function::New<RunMatmuls>(env, "runMatmuls"));
  exports.Set("sharpFit", Napi::Function::New<SharpFit>(env, "sharpFit"));
  return exports;
}

}  // namespace napi
}  // namespace lb

static Napi::Object InitLowbit(Napi::Env env, Napi::Object exports) { return lb::napi::Init(env, exports); }

NODE_API_MODULE(lowbit, InitLowbit)
