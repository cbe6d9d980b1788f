// AddonModel, AddonContext, AddonSampler (see model-wrap.h).
#include "model-wrap.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <set>
#include <vector>

#include "../core/pool.h"
#include "addon.h"
#include "async.h"
#include "qtensor-wrap.h"

namespace lb {
namespace napi {

namespace {

double number_field(Napi::Env env, const Napi::Object &o, const char *key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string("config.") + key + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw Napi::RangeError::New(env, std::string("config.") + key + " must be finite");
  return d;
}

int int_field(Napi::Env env, const Napi::Object &o, const char *key) {
  const double d = number_field(env, o, key);
  if (d < 0 || d > 1e9 || d != std::floor(d))
    throw Napi::RangeError::New(env, std::string("config.") + key + " must be a non-negative integer");
  return (int)d;
}

model_config config_arg(Napi::Env env, const Napi::Object &o) {
  model_config c;
  c.dim = int_field(env, o, "dim");
  c.hidden_dim = int_field(env, o, "hiddenDim");
  c.n_layers = int_field(env, o, "nLayers");
  c.n_heads = int_field(env, o, "nHeads");
  c.n_kv_heads = int_field(env, o, "nKvHeads");
  c.head_dim = int_field(env, o, "headDim");
  c.vocab_size = int_field(env, o, "vocabSize");
  c.max_seq_len = int_field(env, o, "maxSeqLen");
  c.norm_eps = (float)number_field(env, o, "normEps");
  c.rope_theta = (float)number_field(env, o, "ropeTheta");
  c.rope = o.Get("ropeStyle").ToString().Utf8Value() == "half" ? ROPE_HALF : ROPE_INTERLEAVED;
  Napi::Value factors = o.Get("ropeFreqFactors");
  if (factors.IsTypedArray() && factors.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array) {
    Napi::Float32Array a = factors.As<Napi::Float32Array>();
    c.rope_freq_factors.assign(a.Data(), a.Data() + a.ElementLength());
  }
  Napi::Value scaling = o.Get("ropeScaling");
  if (scaling.IsObject()) {
    Napi::Object s = scaling.As<Napi::Object>();
    c.rope_factor = (float)number_field(env, s, "factor");
    c.rope_low_freq_factor = (float)number_field(env, s, "lowFreqFactor");
    c.rope_high_freq_factor = (float)number_field(env, s, "highFreqFactor");
    c.rope_original_max_pos = int_field(env, s, "originalMaxPositions");
  }
  return c;
}

std::vector<float> floats_field(Napi::Env env, const Napi::Object &o, const char *key) {
  Napi::Value v = o.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, std::string(key) + " must be a Float32Array");
  Napi::Float32Array a = v.As<Napi::Float32Array>();
  return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
}

// The tensors a model is built from, and their JS handles, which the model consumes once built.
struct tensor_inputs {
  Napi::Env env;
  std::vector<Napi::Value> handles;
  qtensor take(Napi::Value v) {
    qtensor t = AddonQTensor::From(env, v);
    handles.push_back(v);
    return t;
  }
};

linear linear_field(tensor_inputs &in, const Napi::Object &layer, const char *key) {
  linear l;
  l.w = in.take(layer.Get(key));
  Napi::Value rec = layer.Get("recovery");
  if (rec.IsObject()) {
    Napi::Value r = rec.As<Napi::Object>().Get(key);
    if (r.IsObject()) {
      l.recovery.a = in.take(r.As<Napi::Object>().Get("a"));
      l.recovery.b = in.take(r.As<Napi::Object>().Get("b"));
    }
  }
  return l;
}

// Bytes of the distinct buffers a model holds (shared weights count once).
int64_t unique_bytes(const model &m) {
  std::set<const aligned_buffer *> seen;
  int64_t total = 0;
  auto add = [&](const qtensor &t) {
    for (const auto &buf : {t.data, t.scales})
      if (buf && seen.insert(buf.get()).second) total += (int64_t)buf->size();
  };
  auto add_linear = [&](const linear &l) {
    add(l.w);
    if (!l.recovery.empty()) add(l.recovery.a), add(l.recovery.b);
  };
  add(m.weights.embedding);
  add(m.weights.output);
  for (const layer_weights &w : m.weights.layers) layer_weights::each_linear(w, add_linear);
  return total;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// AddonModel(config, weights, activations)

Napi::Function AddonModel::Define(Napi::Env env) {
  return DefineClass(env, "AddonModel",
                     {InstanceMethod<&AddonModel::Dispose>("dispose"), InstanceMethod<&AddonModel::Info>("info")});
}

AddonModel::AddonModel(const Napi::CallbackInfo &info) : Napi::ObjectWrap<AddonModel>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject() || !info[1].IsObject()) throw Napi::TypeError::New(env, "expected (config, weights)");
  auto m = std::make_shared<model>();
  m->config = config_arg(env, info[0].As<Napi::Object>());
  m->activations = info[2].IsString() && info[2].As<Napi::String>().Utf8Value() == "f32" ? ACT_F32 : ACT_Q8;
  Napi::Object w = info[1].As<Napi::Object>();
  tensor_inputs in{env, {}};
  m->weights.embedding = in.take(w.Get("embedding"));
  m->weights.output = in.take(w.Get("output"));
  m->weights.final_norm = floats_field(env, w, "finalNorm");
  Napi::Value layers = w.Get("layers");
  if (!layers.IsArray()) throw Napi::TypeError::New(env, "weights.layers must be an array");
  Napi::Array arr = layers.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Object l = arr.Get(i).As<Napi::Object>();
    layer_weights lw;
    lw.attn_norm = floats_field(env, l, "attnNorm");
    lw.ffn_norm = floats_field(env, l, "ffnNorm");
    lw.wq = linear_field(in, l, "wq");
    lw.wk = linear_field(in, l, "wk");
    lw.wv = linear_field(in, l, "wv");
    lw.wo = linear_field(in, l, "wo");
    lw.gate = linear_field(in, l, "gate");
    lw.up = linear_field(in, l, "up");
    lw.down = linear_field(in, l, "down");
    m->weights.layers.push_back(std::move(lw));
  }
  const std::string problem = model_validate(*m);
  if (!problem.empty()) throw_coded(env, "LOWBIT_BAD_INPUT", problem);
  // The model takes its weights: with the handles gone it owns their storage alone, so packing
  // frees each source buffer as it copies it (no second copy of the model at the peak), and
  // interleaving in place rewrites storage no one else reads.
  for (Napi::Value v : in.handles) AddonQTensor::Consume(env, v);
  model_pack_weights(*m);
  model_interleave_weights(*m, active_kernels());
  reported_bytes_ = unique_bytes(*m);
  Napi::MemoryManagement::AdjustExternalMemory(env, reported_bytes_);
  model_ = std::move(m);
#if defined(__GLIBC__)
  // Every tensor came through a read buffer, since freed; glibc keeps such freed heap memory for
  // reuse (about 100 MiB after a 1B model). Hand it back to the system.
  malloc_trim(0);
#endif
}

AddonModel::~AddonModel() {
  if (model_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -reported_bytes_);
}

std::shared_ptr<const model> AddonModel::get(Napi::Env env) const {
  if (!model_) throw_coded(env, "LOWBIT_DISPOSED", "model has been disposed");
  return model_;
}

Napi::Value AddonModel::Dispose(const Napi::CallbackInfo &info) {
  if (model_) {
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -reported_bytes_);
    model_.reset();
  }
  return info.Env().Undefined();
}

// info() -> { bytes }: bytes of distinct weight storage held
Napi::Value AddonModel::Info(const Napi::CallbackInfo &info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("bytes", (double)unique_bytes(*get(info.Env())));
  return o;
}

// ---------------------------------------------------------------------------------------------
// AddonContext(model, nCtx, kvType, threads)

Napi::Function AddonContext::Define(Napi::Env env) {
  return DefineClass(env, "AddonContext",
                     {InstanceMethod<&AddonContext::Eval>("eval"), InstanceMethod<&AddonContext::Generate>("generate"),
                      InstanceMethod<&AddonContext::Allow>("allow"),
                      InstanceMethod<&AddonContext::Truncate>("truncate"),
                      InstanceMethod<&AddonContext::Tokens>("tokens"), InstanceMethod<&AddonContext::Abort>("abort"),
                      InstanceMethod<&AddonContext::RecordMlp>("recordMlp"),
                      InstanceMethod<&AddonContext::RecordedMlp>("recordedMlp"),
                      InstanceMethod<&AddonContext::Dispose>("dispose")});
}

AddonContext::AddonContext(const Napi::CallbackInfo &info) : Napi::ObjectWrap<AddonContext>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(addon_data(env).model_ctor.Value()))
    throw Napi::TypeError::New(env, "expected an AddonModel");
  auto s = std::make_shared<context_state>();
  s->m = AddonModel::Unwrap(info[0].As<Napi::Object>())->get(env);
  const int n_ctx = info[1].As<Napi::Number>().Int32Value();
  if (n_ctx < 1 || n_ctx > s->m->config.max_seq_len * 64)
    throw Napi::RangeError::New(env, "context length out of range");
  const kv_type kv = info[2].ToString().Utf8Value() == "f16" ? KV_F16 : KV_F32;
  const int threads = info[3].IsNumber() && info[3].As<Napi::Number>().Int32Value() > 0
                          ? info[3].As<Napi::Number>().Int32Value()
                          : default_threads();
  guarded(env, [&] {
    context_init(s->ctx, *s->m, n_ctx, kv, threads);
    return 0;
  });
  s->ctx.abort = &s->abort;
  reported_bytes_ = (int64_t)(s->ctx.k_cache->size() + s->ctx.v_cache->size());
  Napi::MemoryManagement::AdjustExternalMemory(env, reported_bytes_);
  state_ = std::move(s);
}

AddonContext::~AddonContext() {
  if (state_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -reported_bytes_);
}

std::shared_ptr<context_state> AddonContext::live(Napi::Env env) const {
  if (!state_) throw_coded(env, "LOWBIT_DISPOSED", "context has been disposed");
  return state_;
}

namespace {

std::vector<int32_t> tokens_arg(Napi::Env env, const Napi::Value &v) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(env, "tokens must be an Int32Array");
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  if (a.ElementLength() == 0) throw Napi::RangeError::New(env, "no tokens");
  return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

// Claims the context for one job; released by the returned guard's destructor (on any thread).
struct busy_guard {
  std::shared_ptr<context_state> s;
  explicit busy_guard(std::shared_ptr<context_state> st) : s(std::move(st)) {}
  ~busy_guard() {
    if (s) s->busy.store(false);
  }
};

std::shared_ptr<busy_guard> claim(Napi::Env env, std::shared_ptr<context_state> s) {
  bool expected = false;
  if (!s->busy.compare_exchange_strong(expected, true))
    throw_coded(env, "LOWBIT_BUSY", "the context is already evaluating; await the previous call first");
  s->abort.store(false);
  return std::make_shared<busy_guard>(std::move(s));
}

// Runs forward, mapping an abort to its own code.
void run_forward(context_state &s, const std::vector<int32_t> &tokens, float *logits, bool all) {
  try {
    forward(s.ctx, tokens.data(), (int)tokens.size(), logits, all);
  } catch (const std::runtime_error &e) {
    if (s.abort.load()) throw coded_error("LOWBIT_ABORTED", "evaluation was aborted");
    throw;
  }
}

}  // namespace

// eval(tokens: Int32Array, logits: 'none' | 'last' | 'all') -> Promise<Float32Array | null>
Napi::Value AddonContext::Eval(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  auto s = live(env);
  auto tokens = std::make_shared<std::vector<int32_t>>(tokens_arg(env, info[0]));
  const std::string mode = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "last";
  const bool want = mode != "none", all = mode == "all";
  auto guard = claim(env, s);
  return promise_worker<std::vector<float>>::start(
      env,
      [s, tokens, want, all, guard] {
        std::vector<float> logits;
        if (want) logits.resize((size_t)(all ? tokens->size() : 1) * s->m->config.vocab_size);
        run_forward(*s, *tokens, want ? logits.data() : nullptr, all);
        return logits;
      },
      [want](Napi::Env env, std::vector<float> &logits) -> Napi::Value {
        if (!want) return env.Null();
        Napi::Float32Array out = Napi::Float32Array::New(env, logits.size());
        std::memcpy(out.Data(), logits.data(), logits.size() * sizeof(float));
        return out;
      });
}

namespace {

// One generated token and the seconds its forward pass and sampling took.
struct token_event {
  int32_t token;
  double seconds;
};

// generate()'s loop on a libuv thread: evaluate, sample, hand the token to JS, feed it back.
// Tokens reach JS through a queue while the next one is computed, so a decode step does not wait
// for JS and a libuv thread hand-off every token (0.5-0.8 ms a token on MobileLLM-125M here).
class generate_worker : public Napi::AsyncProgressQueueWorker<token_event> {
 public:
  struct request {
    std::shared_ptr<context_state> s;
    std::shared_ptr<busy_guard> guard;
    std::shared_ptr<sampler> smp;
    std::vector<int32_t> prompt;
    int64_t max_tokens;
    std::set<int32_t> stop_ids;  // end after producing one of these
  };

  static Napi::Promise start(Napi::Env env, request r, Napi::Function on_token) {
    auto *w = new generate_worker(env, std::move(r), on_token);
    Napi::Promise promise = w->deferred_.Promise();
    w->Queue();
    return promise;
  }

 private:
  generate_worker(Napi::Env env, request r, Napi::Function on_token)
      : Napi::AsyncProgressQueueWorker<token_event>(env, "lowbit.generate"),
        deferred_(Napi::Promise::Deferred::New(env)), r_(std::move(r)), on_token_(Napi::Persistent(on_token)) {}

  // Blocks until JS allows another token or the context is aborted.
  void wait_for_consumer(context_state &s, int64_t produced) {
    std::unique_lock<std::mutex> lock(s.flow_mutex);
    s.flow.wait(lock, [&] { return produced < s.allowed || s.abort.load(); });
  }

  void Execute(const ExecutionProgress &progress) override {
    context_state &s = *r_.s;
    try {
      std::vector<int32_t> input = std::move(r_.prompt);
      std::vector<float> logits(s.m->config.vocab_size);
      for (int64_t produced = 0;; produced++) {
        wait_for_consumer(s, produced);
        const auto t0 = std::chrono::steady_clock::now();
        run_forward(s, input, logits.data(), false);
        const int32_t next =
            r_.smp->sample(logits.data(), (int)logits.size(), s.ctx.tokens.data(), (int)s.ctx.tokens.size());
        const token_event e{next, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
        progress.Send(&e, 1);
        // The same ends as lib/generate.ts: an end-of-text id, the token limit, a full context.
        if (r_.stop_ids.count(next) || produced + 1 >= r_.max_tokens || s.ctx.pos >= s.ctx.n_ctx) return;
        input.assign(1, next);
      }
    } catch (...) {
      native_error e = current_error();
      code_ = e.code;
      SetError(e.message);
    }
  }

  void OnProgress(const token_event *events, size_t count) override {
    Napi::HandleScope scope(Env());
    for (size_t i = 0; i < count; i++)
      on_token_.Call({Napi::Number::New(Env(), events[i].token), Napi::Number::New(Env(), events[i].seconds)});
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error &e) override {
    Napi::HandleScope scope(Env());
    deferred_.Reject(make_error(Env(), code_, e.Message()).Value());
  }

  Napi::Promise::Deferred deferred_;
  request r_;
  Napi::FunctionReference on_token_;
  std::string code_;
};

}  // namespace

// generate(prompt: Int32Array, sampler: AddonSampler, maxTokens: number, stopIds: Int32Array,
//          onToken: (token, seconds) => void) -> Promise<void>: evaluates the prompt, then samples
// and feeds back up to maxTokens tokens, stopping after one of stopIds or when the context is
// full. It produces a token only while fewer than allowed (see allow()) exist; abort() ends it
// with LOWBIT_ABORTED.
Napi::Value AddonContext::Generate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  auto s = live(env);
  generate_worker::request r;
  r.prompt = tokens_arg(env, info[0]);
  if (!info[1].IsObject() || !info[1].As<Napi::Object>().InstanceOf(addon_data(env).sampler_ctor.Value()))
    throw Napi::TypeError::New(env, "expected an AddonSampler");
  r.smp = AddonSampler::Unwrap(info[1].As<Napi::Object>())->get();
  if (!info[2].IsNumber() || !(info[2].As<Napi::Number>().DoubleValue() >= 1))
    throw Napi::RangeError::New(env, "maxTokens must be at least 1");
  r.max_tokens = (int64_t)std::min(info[2].As<Napi::Number>().DoubleValue(), 9e15);
  if (!info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(env, "stopIds must be an Int32Array");
  Napi::Int32Array stops = info[3].As<Napi::Int32Array>();
  r.stop_ids.insert(stops.Data(), stops.Data() + stops.ElementLength());
  if (!info[4].IsFunction()) throw Napi::TypeError::New(env, "onToken must be a function");
  r.guard = claim(env, s);
  {
    std::lock_guard<std::mutex> lock(s->flow_mutex);
    s->allowed = 0;
  }
  r.s = std::move(s);
  return generate_worker::start(env, std::move(r), info[4].As<Napi::Function>());
}

// allow(count): the running generate() may produce `count` more tokens.
Napi::Value AddonContext::Allow(const Napi::CallbackInfo &info) {
  if (state_ && info[0].IsNumber()) {
    {
      std::lock_guard<std::mutex> lock(state_->flow_mutex);
      state_->allowed += std::max<int64_t>(0, info[0].As<Napi::Number>().Int64Value());
    }
    state_->flow.notify_all();
  }
  return info.Env().Undefined();
}

Napi::Value AddonContext::Truncate(const Napi::CallbackInfo &info) {
  auto s = live(info.Env());
  if (s->busy.load()) throw_coded(info.Env(), "LOWBIT_BUSY", "the context is evaluating");
  context_truncate(s->ctx, info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value AddonContext::Tokens(const Napi::CallbackInfo &info) {
  auto s = live(info.Env());
  if (s->busy.load()) throw_coded(info.Env(), "LOWBIT_BUSY", "the context is evaluating");
  Napi::Int32Array out = Napi::Int32Array::New(info.Env(), s->ctx.tokens.size());
  std::memcpy(out.Data(), s->ctx.tokens.data(), s->ctx.tokens.size() * sizeof(int32_t));
  return out;
}

// recordMlp(layers: Int32Array | null): from the next eval on, records what those layers' MLPs
// read (SHARP's calibration); null stops and frees the records.
Napi::Value AddonContext::RecordMlp(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  auto s = live(env);
  if (s->busy.load()) throw_coded(env, "LOWBIT_BUSY", "the context is evaluating");
  s->recorder = mlp_recorder();
  s->ctx.recorder = nullptr;
  if (info[0].IsNull() || info[0].IsUndefined()) return env.Undefined();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(env, "layers must be an Int32Array or null");
  const size_t n_layers = (size_t)s->m->config.n_layers;
  s->recorder.wanted.assign(n_layers, 0);
  s->recorder.ffn_in.resize(n_layers);
  s->recorder.swiglu.resize(n_layers);
  Napi::Int32Array layers = info[0].As<Napi::Int32Array>();
  for (size_t i = 0; i < layers.ElementLength(); i++) {
    if (layers[i] < 0 || (size_t)layers[i] >= n_layers) throw Napi::RangeError::New(env, "layer out of range");
    s->recorder.wanted[layers[i]] = 1;
  }
  s->ctx.recorder = &s->recorder;
  return env.Undefined();
}

// recordedMlp(layer) -> { ffnIn: Float32Array (tokens x dim), swiglu: Float32Array (tokens x hidden) }
Napi::Value AddonContext::RecordedMlp(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  auto s = live(env);
  if (s->busy.load()) throw_coded(env, "LOWBIT_BUSY", "the context is evaluating");
  const int layer = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1;
  if (!s->ctx.recorder || layer < 0 || (size_t)layer >= s->recorder.wanted.size() || !s->recorder.wanted[layer])
    throw Napi::RangeError::New(env, "that layer is not being recorded");
  Napi::Object o = Napi::Object::New(env);
  for (auto [key, values] : {std::pair{"ffnIn", &s->recorder.ffn_in[layer]}, std::pair{"swiglu", &s->recorder.swiglu[layer]}}) {
    Napi::Float32Array a = Napi::Float32Array::New(env, values->size());
    if (!values->empty()) std::memcpy(a.Data(), values->data(), values->size() * sizeof(float));
    o.Set(key, a);
  }
  return o;
}

// Wakes a generate() loop waiting for its consumer, so that it sees the abort.
static void abort_context(context_state &s) {
  {
    std::lock_guard<std::mutex> lock(s.flow_mutex);
    s.abort.store(true);
  }
  s.flow.notify_all();
}

Napi::Value AddonContext::Abort(const Napi::CallbackInfo &info) {
  if (state_) abort_context(*state_);
  return info.Env().Undefined();
}

Napi::Value AddonContext::Dispose(const Napi::CallbackInfo &info) {
  if (state_) {
    abort_context(*state_);  // a running job stops at the next layer and frees what it holds
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -reported_bytes_);
    state_.reset();
  }
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------
// AddonSampler({temperature, topK, topP, minP, repeatPenalty, repeatLastN}, seed)

Napi::Function AddonSampler::Define(Napi::Env env) {
  return DefineClass(env, "AddonSampler", {InstanceMethod<&AddonSampler::Sample>("sample")});
}

AddonSampler::AddonSampler(const Napi::CallbackInfo &info) : Napi::ObjectWrap<AddonSampler>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "expected sampler parameters");
  Napi::Object o = info[0].As<Napi::Object>();
  sampler_params p;
  p.temperature = (float)number_field(env, o, "temperature");
  p.top_k = int_field(env, o, "topK");
  p.top_p = (float)number_field(env, o, "topP");
  p.min_p = (float)number_field(env, o, "minP");
  p.repeat_penalty = (float)number_field(env, o, "repeatPenalty");
  p.repeat_last_n = int_field(env, o, "repeatLastN");
  const double seed = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 0;
  sampler_ = std::make_shared<sampler>(p, (uint64_t)seed);
}

// sample(logits: Float32Array, history: Int32Array) -> number (for tests and custom loops)
Napi::Value AddonSampler::Sample(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, "logits must be a Float32Array");
  Napi::Float32Array l = info[0].As<Napi::Float32Array>();
  if (l.ElementLength() == 0) throw Napi::RangeError::New(env, "no logits");
  std::vector<float> logits(l.Data(), l.Data() + l.ElementLength());
  std::vector<int32_t> history;
  if (info[1].IsTypedArray() && info[1].As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
    Napi::Int32Array h = info[1].As<Napi::Int32Array>();
    history.assign(h.Data(), h.Data() + h.ElementLength());
  }
  return Napi::Number::New(env, sampler_->sample(logits.data(), (int)logits.size(), history.data(), (int)history.size()));
}

}  // namespace napi
}  // namespace lb
