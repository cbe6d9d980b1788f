// AddonQTensor (see qtensor-wrap.h).
#include "qtensor-wrap.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "../core/pool.h"
#include "../core/quantize.h"
#include "../kernels/kernels.h"
#include "addon.h"
#include "async.h"

namespace lb {
namespace napi {

namespace {

format format_arg(Napi::Env env, const Napi::Value &v) {
  format f;
  if (!v.IsString() || !format_from_name(v.As<Napi::String>().Utf8Value().c_str(), &f))
    throw Napi::TypeError::New(env, "unknown format");
  return f;
}

int64_t int_arg(Napi::Env env, const Napi::Value &v, const char *name) {
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string(name) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 9007199254740991.0) || d != std::floor(d))
    throw Napi::RangeError::New(env, std::string(name) + " must be a non-negative integer");
  return (int64_t)d;
}

int threads_arg(Napi::Env env, const Napi::Value &v) {
  const int64_t t = v.IsUndefined() ? 0 : int_arg(env, v, "threads");
  return t == 0 ? default_threads() : (int)std::min<int64_t>(t, 1024);
}

act_mode act_arg(Napi::Env env, const Napi::Value &v) {
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "int8";
  if (s == "int8") return ACT_Q8;
  if (s == "f32") return ACT_F32;
  throw Napi::TypeError::New(env, "activations must be 'int8' or 'f32'");
}

void check_shape(Napi::Env env, format f, int64_t rows, int64_t cols, int64_t group) {
  const std::string problem = qtensor_check_shape(f, rows, cols, group);
  if (!problem.empty()) throw Napi::RangeError::New(env, problem);
}

// Float weights from a Float32Array, or a Uint16Array of f16/bf16 bits, copied and widened.
struct weights_in {
  std::vector<float> values;
  source_dtype source = SOURCE_F32;
};

weights_in weights_arg(Napi::Env env, const Napi::Value &v, const Napi::Value &source, size_t count) {
  weights_in w;
  const std::string src = source.IsString() ? source.As<Napi::String>().Utf8Value() : "f32";
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array && src == "f32") {
    Napi::Float32Array a = v.As<Napi::Float32Array>();
    if (a.ElementLength() != count) throw Napi::RangeError::New(env, "weights length must be rows * cols");
    w.values.assign(a.Data(), a.Data() + count);
    return w;
  }
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array &&
      (src == "f16" || src == "bf16")) {
    Napi::Uint16Array a = v.As<Napi::Uint16Array>();
    if (a.ElementLength() != count) throw Napi::RangeError::New(env, "weights length must be rows * cols");
    w.source = src == "f16" ? SOURCE_F16 : SOURCE_BF16;
    w.values.resize(count);
    for (size_t i = 0; i < count; i++) w.values[i] = w.source == SOURCE_F16 ? f16_to_f32(a[i]) : bf16_to_f32(a[i]);
    return w;
  }
  throw Napi::TypeError::New(env, "weights must be a Float32Array (f32) or a Uint16Array (f16, bf16)");
}

// Quantizes all rows on the pool; returns "" or the first row's error.
std::string quantize_all(qtensor &t, const float *w, quant_method m, source_dtype src, int threads) {
  const int64_t per = 64, tasks = (t.rows + per - 1) / per;
  std::vector<std::string> errors(tasks);
  thread_pool::global().run(tasks, threads, [&](int64_t i) {
    errors[i] = quantize_rows(t, w, i * per, std::min(t.rows, (i + 1) * per), m, src);
  });
  for (const std::string &e : errors)
    if (!e.empty()) return e;
  return "";
}

struct quantize_request {
  format f;
  int64_t rows, cols, group;
  quant_method method;
  int threads;
};

quantize_request quantize_args(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  quantize_request q;
  q.rows = int_arg(env, info[1], "rows");
  q.cols = int_arg(env, info[2], "cols");
  q.f = format_arg(env, info[3]);
  if (!info[4].IsString() || !quant_method_from_name(info[4].As<Napi::String>().Utf8Value().c_str(), &q.method))
    throw Napi::TypeError::New(env, "method must be 'exact', 'rtn' or 'mse'");
  q.group = int_arg(env, info[5], "group");
  q.threads = threads_arg(env, info[7]);
  if (!traits(q.f).quantized) throw Napi::TypeError::New(env, "quantize needs a quantized format");
  check_shape(env, q.f, q.rows, q.cols, q.group);
  return q;
}

// Tensor data as a V8-owned copy (never an external buffer: Electron's memory cage rejects those).
Napi::Uint8Array copy_bytes(Napi::Env env, const uint8_t *p, size_t n) {
  Napi::Uint8Array a = Napi::Uint8Array::New(env, n);
  if (n) std::memcpy(a.Data(), p, n);
  return a;
}

Napi::Float32Array copy_floats(Napi::Env env, const float *p, size_t n) {
  Napi::Float32Array a = Napi::Float32Array::New(env, n);
  if (n) std::memcpy(a.Data(), p, n * sizeof(float));
  return a;
}

}  // namespace

Napi::Function AddonQTensor::Define(Napi::Env env) {
  return DefineClass(env, "AddonQTensor",
                     {
                         StaticMethod<&AddonQTensor::Quantize>("quantize"),
                         StaticMethod<&AddonQTensor::QuantizeAsync>("quantizeAsync"),
                         StaticMethod<&AddonQTensor::FromPacked>("fromPacked"),
                         StaticMethod<&AddonQTensor::FromCodes>("fromCodes"),
                         InstanceMethod<&AddonQTensor::Dequantize>("dequantize"),
                         InstanceMethod<&AddonQTensor::Matmul>("matmul"),
                         InstanceMethod<&AddonQTensor::MatmulSync>("matmulSync"),
                         InstanceMethod<&AddonQTensor::Packed>("packed"),
                         InstanceMethod<&AddonQTensor::Scales>("scales"),
                         InstanceMethod<&AddonQTensor::Codes>("codes"),
                         InstanceMethod<&AddonQTensor::View>("view"),
                         InstanceMethod<&AddonQTensor::Interleaved>("interleaved"),
                         InstanceMethod<&AddonQTensor::Dispose>("dispose"),
                         InstanceMethod<&AddonQTensor::Info>("info"),
                     });
}

AddonQTensor::AddonQTensor(const Napi::CallbackInfo &info) : Napi::ObjectWrap<AddonQTensor>(info) {}

AddonQTensor::~AddonQTensor() { release(Env()); }

Napi::Object AddonQTensor::Create(Napi::Env env, qtensor t, bool owns) {
  Napi::Object obj = addon_data(env).qtensor_ctor.New({});
  Unwrap(obj)->set(env, std::move(t), owns);
  return obj;
}

const qtensor &AddonQTensor::From(Napi::Env env, Napi::Value v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(addon_data(env).qtensor_ctor.Value()))
    throw Napi::TypeError::New(env, "expected a native QTensor");
  return Unwrap(v.As<Napi::Object>())->live(env);
}

void AddonQTensor::Consume(Napi::Env env, Napi::Value v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(addon_data(env).qtensor_ctor.Value()))
    throw Napi::TypeError::New(env, "expected a native QTensor");
  Unwrap(v.As<Napi::Object>())->release(env);  // a no-op on a handle consumed before
}

void AddonQTensor::set(Napi::Env env, qtensor t, bool owns) {
  tensor_ = std::move(t);
  alive_ = true;
  reported_bytes_ = owns ? (int64_t)tensor_.bytes() : 0;
  if (reported_bytes_) Napi::MemoryManagement::AdjustExternalMemory(env, reported_bytes_);
}

void AddonQTensor::release(Napi::Env env) {
  if (!alive_) return;
  if (reported_bytes_) Napi::MemoryManagement::AdjustExternalMemory(env, -reported_bytes_);
  tensor_ = qtensor();  // drops this handle's share of the storage
  alive_ = false;
}

const qtensor &AddonQTensor::live(Napi::Env env) const {
  if (!alive_) throw_coded(env, "LOWBIT_DISPOSED", "QTensor has been disposed");
  return tensor_;
}

Napi::Value AddonQTensor::Dispose(const Napi::CallbackInfo &info) {
  release(info.Env());
  return info.Env().Undefined();
}

// quantize(weights, rows, cols, format, method, group, source, threads) -> AddonQTensor
Napi::Value AddonQTensor::Quantize(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const quantize_request q = quantize_args(info);
  weights_in w = weights_arg(env, info[0], info[6], (size_t)(q.rows * q.cols));
  qtensor t = guarded(env, [&] { return qtensor_alloc(q.f, q.rows, q.cols, q.group); });
  const std::string err = guarded(env, [&] { return quantize_all(t, w.values.data(), q.method, w.source, q.threads); });
  if (!err.empty()) throw_coded(env, q.method == METHOD_EXACT ? "LOWBIT_OFF_GRID" : "LOWBIT_BAD_INPUT", err);
  return Create(env, std::move(t));
}

Napi::Value AddonQTensor::QuantizeAsync(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const quantize_request q = quantize_args(info);
  auto w = std::make_shared<weights_in>(weights_arg(env, info[0], info[6], (size_t)(q.rows * q.cols)));
  return promise_worker<qtensor>::start(
      env,
      [q, w] {
        qtensor t = qtensor_alloc(q.f, q.rows, q.cols, q.group);
        const std::string err = quantize_all(t, w->values.data(), q.method, w->source, q.threads);
        if (!err.empty()) throw coded_error(q.method == METHOD_EXACT ? "LOWBIT_OFF_GRID" : "LOWBIT_BAD_INPUT", err);
        return t;
      },
      [](Napi::Env env, qtensor &t) -> Napi::Value { return Create(env, std::move(t)); });
}

namespace {

// Copies and checks the scales of t (rows x groups, all finite).
void set_scales(Napi::Env env, qtensor &t, const Napi::Value &v) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, "scales must be a Float32Array");
  Napi::Float32Array scales = v.As<Napi::Float32Array>();
  const size_t n_scales = (size_t)(t.rows * t.n_groups());
  if (scales.ElementLength() != n_scales)
    throw_coded(env, "LOWBIT_BAD_INPUT",
                "expected " + std::to_string(n_scales) + " scales, got " + std::to_string(scales.ElementLength()));
  for (size_t i = 0; i < n_scales; i++)
    if (!std::isfinite(scales[i])) throw_coded(env, "LOWBIT_BAD_INPUT", "scale " + std::to_string(i) + " is not finite");
  std::memcpy(t.scales->data(), scales.Data(), n_scales * sizeof(float));
}

void check_codes(Napi::Env env, format f, const uint8_t *codes, int64_t cols, int64_t row) {
  for (int64_t j = 0; j < cols; j++)
    if (codes[j] >= traits(f).n_codes)
      throw_coded(env, "LOWBIT_BAD_INPUT", "row " + std::to_string(row) + " column " + std::to_string(j) +
                                               " holds code " + std::to_string(codes[j]) + ", invalid for " +
                                               traits(f).name);
}

struct shape_args {
  format f;
  int64_t rows, cols, group;
};

shape_args shape_from(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  shape_args a{format_arg(env, info[0]), int_arg(env, info[1], "rows"), int_arg(env, info[2], "cols"),
               int_arg(env, info[3], "group")};
  check_shape(env, a.f, a.rows, a.cols, a.group);
  return a;
}

Napi::Uint8Array bytes_arg(Napi::Env env, const Napi::Value &v, const char *name, size_t expected) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(env, std::string(name) + " must be a Uint8Array");
  Napi::Uint8Array a = v.As<Napi::Uint8Array>();
  if (a.ByteLength() != expected)
    throw_coded(env, "LOWBIT_BAD_INPUT", std::string(name) + " has " + std::to_string(a.ByteLength()) +
                                             " bytes, expected " + std::to_string(expected));
  return a;
}

}  // namespace

// fromPacked(format, rows, cols, group, packed: Uint8Array, scales: Float32Array | null):
// rows already in lowbit's packed layout (or raw f16/f32 values).
Napi::Value AddonQTensor::FromPacked(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const shape_args a = shape_from(info);
  qtensor t = guarded(env, [&] { return qtensor_alloc(a.f, a.rows, a.cols, a.group); });
  Napi::Uint8Array packed = bytes_arg(env, info[4], "packed data", (size_t)a.rows * t.row_stride());
  std::memcpy(t.data->data(), packed.Data(), packed.ByteLength());
  if (traits(a.f).quantized) {
    set_scales(env, t, info[5]);
    // Untrusted codes: a 2-bit field can hold 3, which ternary does not define.
    if (traits(a.f).n_codes < (1 << traits(a.f).code_bits)) {
      std::vector<uint8_t> codes(a.cols);
      for (int64_t r = 0; r < a.rows; r++) {
        unpack_row(a.f, t.row(r), a.cols, codes.data());
        check_codes(env, a.f, codes.data(), a.cols, r);
      }
    }
  }
  return Create(env, std::move(t));
}

// fromCodes(format, rows, cols, group, codes: Uint8Array (one per weight), scales): packs codes
// that a loader decoded from another layout (GGUF Q4_0, TQ2_0 ...).
Napi::Value AddonQTensor::FromCodes(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const shape_args a = shape_from(info);
  if (!traits(a.f).quantized) throw Napi::TypeError::New(env, "fromCodes needs a quantized format");
  qtensor t = guarded(env, [&] { return qtensor_alloc(a.f, a.rows, a.cols, a.group); });
  Napi::Uint8Array codes = bytes_arg(env, info[4], "codes", (size_t)(a.rows * a.cols));
  for (int64_t r = 0; r < a.rows; r++) {
    check_codes(env, a.f, codes.Data() + r * a.cols, a.cols, r);
    pack_row(a.f, codes.Data() + r * a.cols, a.cols, t.row(r));
  }
  set_scales(env, t, info[5]);
  return Create(env, std::move(t));
}

Napi::Value AddonQTensor::Dequantize(const Napi::CallbackInfo &info) {
  const qtensor &t = live(info.Env());
  Napi::Float32Array out = Napi::Float32Array::New(info.Env(), (size_t)(t.rows * t.cols));
  qtensor_dequantize(t, 0, t.rows, out.Data());
  return out;
}

namespace {
struct matmul_request {
  qtensor w;
  std::vector<float> x;
  int64_t n;
  int threads;
  act_mode act;
  const kernel_table *kernels;
};

matmul_request matmul_args(const Napi::CallbackInfo &info, const qtensor &w) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, "x must be a Float32Array");
  Napi::Float32Array x = info[0].As<Napi::Float32Array>();
  matmul_request m{w, {}, int_arg(env, info[1], "n"), threads_arg(env, info[2]), act_arg(env, info[3]),
                   &kernels_arg(env, info[4])};
  if (m.n < 1 || x.ElementLength() != (size_t)(m.n * w.cols))
    throw Napi::RangeError::New(env, "x must hold n * cols values");
  m.x.assign(x.Data(), x.Data() + x.ElementLength());
  return m;
}

std::vector<float> run_matmul(const matmul_request &m) {
  std::vector<float> y((size_t)(m.n * m.w.rows));
  matmul(m.w, m.x.data(), m.n, y.data(), m.act, m.threads, *m.kernels);
  return y;
}
}  // namespace

// matmul(x, n, threads, act) -> Promise<Float32Array>, y = n x rows
Napi::Value AddonQTensor::Matmul(const Napi::CallbackInfo &info) {
  auto m = std::make_shared<matmul_request>(matmul_args(info, live(info.Env())));
  return promise_worker<std::vector<float>>::start(
      info.Env(), [m] { return run_matmul(*m); },
      [](Napi::Env env, std::vector<float> &y) -> Napi::Value { return copy_floats(env, y.data(), y.size()); });
}

Napi::Value AddonQTensor::MatmulSync(const Napi::CallbackInfo &info) {
  const matmul_request m = matmul_args(info, live(info.Env()));
  std::vector<float> y = guarded(info.Env(), [&] { return run_matmul(m); });
  return copy_floats(info.Env(), y.data(), y.size());
}

Napi::Value AddonQTensor::Packed(const Napi::CallbackInfo &info) {
  const qtensor &t = live(info.Env());
  if (!t.interleaved) return copy_bytes(info.Env(), t.row(0), (size_t)t.rows * t.row_stride());
  std::vector<uint8_t> rows((size_t)t.rows * t.row_stride());
  qtensor_copy_rows(t, 0, t.rows, rows.data());  // back to row order
  return copy_bytes(info.Env(), rows.data(), rows.size());
}

Napi::Value AddonQTensor::Scales(const Napi::CallbackInfo &info) {
  const qtensor &t = live(info.Env());
  if (!t.scales) return info.Env().Null();
  return copy_floats(info.Env(), t.row_scales(0), (size_t)(t.rows * t.n_groups()));
}

Napi::Value AddonQTensor::Codes(const Napi::CallbackInfo &info) {
  const qtensor &t = live(info.Env());
  if (!traits(t.fmt).quantized) throw Napi::TypeError::New(info.Env(), "float formats have no codes");
  Napi::Uint8Array out = Napi::Uint8Array::New(info.Env(), (size_t)(t.rows * t.cols));
  std::vector<uint8_t> row(t.row_stride());
  for (int64_t r = 0; r < t.rows; r++) {
    qtensor_copy_rows(t, r, r + 1, row.data());
    unpack_row(t.fmt, row.data(), t.cols, out.Data() + r * t.cols);
  }
  return out;
}

Napi::Value AddonQTensor::View(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const qtensor &t = live(env);
  const int64_t begin = int_arg(env, info[0], "rowBegin"), count = int_arg(env, info[1], "rowCount");
  if (count < 1 || begin + count > t.rows) throw Napi::RangeError::New(env, "view rows out of range");
  return Create(env, guarded(env, [&] { return qtensor_view(t, begin, count); }), false);
}

// interleaved() -> a copy in the interleaved layout (what models run on CPUs with its GEMV)
Napi::Value AddonQTensor::Interleaved(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const qtensor &t = live(env);
  if (!qtensor_interleavable(t))
    throw Napi::RangeError::New(env, "only whole quantized tensors with one scale per row, rows a multiple of 16 "
                                     "and columns a multiple of 64 can be interleaved");
  return Create(env, guarded(env, [&] { return qtensor_interleaved_copy(t); }));
}

Napi::Value AddonQTensor::Info(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const qtensor &t = live(env);
  Napi::Object o = Napi::Object::New(env);
  o.Set("format", traits(t.fmt).name);
  o.Set("rows", (double)t.rows);
  o.Set("cols", (double)t.cols);
  o.Set("group", (double)t.group);
  o.Set("bytes", (double)t.bytes());
  o.Set("isView", t.row0 != 0 || (t.data && (size_t)t.rows * t.row_stride() != t.data->size()));
  o.Set("interleaved", t.interleaved);
  return o;
}

}  // namespace napi
}  // namespace lb
