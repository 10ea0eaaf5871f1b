// ReformerRunner: Reformer forward on the CPU. Shapes: L tokens of a prefill, B sequences of a
// decode step, d model width, H heads of dh, A = H * dh, F ffn width, V vocab, nh hash rounds,
// NB buckets, c the LSH chunk, c_l the local chunk.
#include "models/reformer/reformer_runner.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status.h"
#include "kernels/cpu/elementwise.h"
#include "models/cpu_runner_common.h"
#include "models/model_dir.h"

namespace blockserve {
namespace {

using engine::SequenceState;
using engine::StepItem;

// Mask values of the trainer (HF's fp32 path), applied by replacement.
constexpr double kSelfMaskValue = -1e5;

void Resize(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

// LayerNorm with weight and bias over rows of n (biased variance, as torch), double sums.
void LayerNorm(const float* x, const float* weight, const float* bias, size_t rows, size_t n, float eps,
               float* out) {
  for (size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    double mean = 0.0;
    for (size_t i = 0; i < n; ++i) mean += xr[i];
    mean /= static_cast<double>(n);
    double var = 0.0;
    for (size_t i = 0; i < n; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    var /= static_cast<double>(n);
    const double inv = 1.0 / std::sqrt(var + static_cast<double>(eps));
    float* o = out + r * n;
    for (size_t i = 0; i < n; ++i) o[i] = static_cast<float>((xr[i] - mean) * inv * weight[i] + bias[i]);
  }
}

void AddBias(float* y, const float* bias, size_t rows, size_t n) {
  for (size_t r = 0; r < rows; ++r) cpu::AddInPlace(y + r * n, bias, n);
}

// relu, or the exact (erf) GELU of torch::nn::GELU.
void Activate(Activation act, float* x, size_t n) {
  if (act == Activation::kRelu) {
    cpu::Relu(x, n);
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    const double v = x[i];
    x[i] = static_cast<float>(0.5 * v * (1.0 + std::erf(v * M_SQRT1_2)));
  }
}

double DotD(const float* a, const float* b, int n) {
  double s = 0.0;
  for (int i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// LSH key of a raw shared query/key: x * rsqrt(mean(x^2) + 1e-6) / sqrt(dh) (trainer's
// NormalizeKeys), i.e. about unit length.
void NormalizeKey(const float* x, int dh, float* out) {
  const double ms = DotD(x, x, dh) / dh;
  const double inv = 1.0 / std::sqrt(ms + 1e-6) / std::sqrt(static_cast<double>(dh));
  for (int i = 0; i < dh; ++i) out[i] = static_cast<float>(x[i] * inv);
}

// One query's softmax average over n keys with the given logits: o (dh) = sum_j p_j v_j, the
// weighted sum in float (cpu::WeightedSumRows), max, sum and lse in double. values[j] points to
// key j's dh floats. Overwrites logits with exp(logit - max). Returns logsumexp(logits).
double Attend(float* logits, const float* const* values, int64_t n, int dh, float* o) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, logits[j]);
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    const double p = std::exp(static_cast<double>(logits[j]) - mx);
    sum += p;
    logits[j] = static_cast<float>(p);
  }
  cpu::WeightedSumRows(logits, values, n, dh, o);
  cpu::Scale(o, dh, static_cast<float>(1.0 / sum));
  return mx + std::log(sum);
}

// o = sum_r softmax_r(lse_r) * o_r over nh rounds; o_r: (nh, dh).
void CombineRounds(const double* lse, const float* o_r, int nh, int dh, float* out) {
  double mx = -INFINITY;
  for (int r = 0; r < nh; ++r) mx = std::max(mx, lse[r]);
  double total = 0.0;
  for (int r = 0; r < nh; ++r) total += std::exp(lse[r] - mx);
  std::fill(out, out + dh, 0.0f);
  for (int r = 0; r < nh; ++r) cpu::Axpy(static_cast<float>(std::exp(lse[r] - mx) / total), o_r + r * dh, out, dh);
}

// Per-thread work buffers of the per-sequence attention (decode runs on the pool's threads),
// grown on demand: no allocation per call once warm.
struct AttendScratch {
  std::vector<float> logits, o, kv;
  std::vector<const float*> keys, values;
  std::vector<int32_t> buckets, window;
  std::vector<double> lse;
};
AttendScratch& ThreadAttendScratch() {
  thread_local AttendScratch scratch;
  return scratch;
}

// Prefetches the `bytes` from p (one request per 64-byte line) for reading.
inline void PrefetchLines(const float* p, size_t bytes) {
  const char* c = reinterpret_cast<const char*>(p);
  for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off, 0, 3);
}

}  // namespace

// Work buffers of one step, grown on demand and reused (Execute is never concurrent).
struct ReformerRunner::Scratch {
  std::vector<float> x1, x2, xn, q, k, v, attn, tmp, hidden, cat, logits, pos;
  std::vector<int32_t> ids;
  std::vector<int64_t> positions;
  std::vector<ReformerSequenceState*> states;  // decode: one per item
  std::vector<size_t> rows;                    // decode: items that want logits
  std::vector<const void*> seen;               // Execute: states of the step, to find repeats
};

ReformerRunner::~ReformerRunner() = default;

absl::StatusOr<std::unique_ptr<ReformerRunner>> ReformerRunner::Create(const ModelConfig& config,
                                                                       std::shared_ptr<const SafetensorsFile> weights,
                                                                       const std::string& name,
                                                                       const RunnerOptions& options) {
  if (config.family != ModelFamily::kReformer) return absl::InvalidArgumentError("not a Reformer model");
  RETURN_IF_ERROR(ValidateModelConfig(config));
  if (config.reformer.max_position_embeddings > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat("max_position_embeddings ",
                                                   config.reformer.max_position_embeddings,
                                                   " is more than this runner supports (2^30)"));
  }
  std::unique_ptr<ReformerRunner> r(new ReformerRunner());
  r->config_ = config;
  r->fingerprint_ = ModelFingerprint("reformer-", config, *weights);
  ASSIGN_OR_RETURN(r->weights_, ReformerWeights::Load(config, std::move(weights), options.weight_dtype));
  r->shape_ = ReformerStateShape::For(config);
  r->pool_ = PooledMatmul(options.num_threads);
  r->scratch_ = std::make_unique<Scratch>();

  const ReformerConfig& rc = config.reformer;
  const bool has_lsh = std::count(rc.attn_layers.begin(), rc.attn_layers.end(), ReformerAttention::kLsh) > 0;
  r->info_ = CpuModelInfo(config, name, options.weight_dtype);
  engine::ModelInfo& info = r->info_;
  info.family = "reformer";
  info.block_size = has_lsh ? rc.lsh_chunk_length : rc.local_chunk_length;
  info.max_position = rc.max_position_embeddings;
  info.state_bytes = r->NewState()->byte_size();
  info.constant_state = false;
  info.whole_first_prompt = true;  // the prefill is one full forward over the first prompt
  return r;
}

int64_t ReformerRunner::PaddedLength(int64_t length) const {
  const ReformerConfig& r = config_.reformer;
  int64_t m = 1, min_chunk = INT64_MAX;
  for (int i = 0; i < config_.num_layers; ++i) {
    const int64_t c = r.attn_layers[i] == ReformerAttention::kLsh ? r.lsh_chunk_length : r.local_chunk_length;
    m = std::lcm(m, c);
    min_chunk = std::min(min_chunk, c);
  }
  if (length > min_chunk && length % m != 0) return (length + m - 1) / m * m;
  return length;
}

std::unique_ptr<SequenceState> ReformerRunner::NewState() const {
  return std::make_unique<ReformerSequenceState>(&shape_, this);
}

std::unique_ptr<SequenceState> ReformerRunner::CloneState(const SequenceState& state) const {
  const auto& from = static_cast<const ReformerSequenceState&>(state);
  BS_CHECK(from.owner() == this);
  return std::make_unique<ReformerSequenceState>(from);  // every member is a value: a deep copy
}

absl::StatusOr<std::string> ReformerRunner::SerializeState(const SequenceState& state) const {
  const auto* s = dynamic_cast<const ReformerSequenceState*>(&state);
  if (s == nullptr || s->owner() != this) {
    return absl::InvalidArgumentError("SerializeState: the state was not made by this runner");
  }
  return SerializeReformerState(*s, fingerprint_);
}

absl::StatusOr<std::unique_ptr<SequenceState>> ReformerRunner::DeserializeState(absl::string_view bytes) const {
  auto state = std::make_unique<ReformerSequenceState>(&shape_, this);
  RETURN_IF_ERROR(
      DeserializeReformerState(bytes, fingerprint_, config_.reformer.max_position_embeddings, state.get()));
  return state;
}

absl::Status ReformerRunner::Execute(absl::Span<const StepItem> items) {
  std::vector<const void*>& seen = scratch_->seen;
  seen.clear();
  const int64_t max_position = config_.reformer.max_position_embeddings;
  for (size_t i = 0; i < items.size(); ++i) {
    const StepItem& item = items[i];
    const auto* state = dynamic_cast<const ReformerSequenceState*>(item.state);
    RETURN_IF_ERROR(CheckStepItem(item, i, state != nullptr && state->owner() == this ? state : nullptr,
                                  config_.vocab_size, &seen));
    if (state->position() + static_cast<int64_t>(item.tokens.size()) > max_position) {
      return absl::OutOfRangeError(absl::StrCat("step item ", i, ": ", item.tokens.size(), " tokens at position ",
                                                state->position(), " would pass the model's ", max_position,
                                                " positions"));
    }
  }
  // Single tokens (at any position: a one-token prefill is the cached step at position 0)
  // go through the batched decode.
  std::vector<const StepItem*> decode;
  for (const StepItem& item : items) {
    if (item.tokens.size() == 1) decode.push_back(&item);
  }
  if (!decode.empty()) DecodeBatch(decode);
  const int64_t V = config_.vocab_size;
  for (const StepItem& item : items) {
    if (item.tokens.size() == 1) continue;
    if (item.state->position() == 0) {
      Prefill(item);
      continue;
    }
    // Later prompts: the cached-step definition, one token at a time (each token's windows
    // depend on the earlier ones), through the same path as decoding.
    const size_t n = item.tokens.size();
    for (size_t t = 0; t < n; ++t) {
      StepItem one;
      one.state = item.state;
      one.tokens = item.tokens.subspan(t, 1);
      one.logits = StepItem::Logits::kNone;
      if (item.logits == StepItem::Logits::kAll) {
        one.logits = StepItem::Logits::kLast;
        one.logits_out = item.logits_out + t * V;
      } else if (item.logits == StepItem::Logits::kLast && t + 1 == n) {
        one.logits = StepItem::Logits::kLast;
        one.logits_out = item.logits_out;
      }
      DecodeBatch({&one});
    }
  }
  return absl::OkStatus();
}

void ReformerRunner::Embed(const int32_t* ids, const int64_t* positions, size_t rows, float* x) {
  const size_t d = config_.d_model;
  weights_->embed().Gather(ids, rows, x);
  std::vector<float>& pos = scratch_->pos;
  Resize(pos, d);
  for (size_t r = 0; r < rows; ++r) {
    weights_->Position(positions[r], pos.data());
    cpu::AddInPlace(x + r * d, pos.data(), d);
  }
}

void ReformerRunner::FeedForward(int layer, const float* x1, float* x2, size_t rows, bool decode) {
  const ReformerLayerWeights& L = weights_->layer(layer);
  const size_t d = config_.d_model, F = config_.ffn_dim;
  Scratch& s = *scratch_;  // xn and tmp hold `rows` rows already (the callers size them)
  Resize(s.hidden, rows * F);
  LayerNorm(x1, L.ffn_norm_weight, L.ffn_norm_bias, rows, d, config_.norm_eps, s.xn.data());
  Project(L.w1, s.xn.data(), rows, s.hidden.data(), decode);
  AddBias(s.hidden.data(), L.b1, rows, F);
  Activate(config_.reformer.hidden_act, s.hidden.data(), rows * F);
  Project(L.w2, s.hidden.data(), rows, s.tmp.data(), decode);
  AddBias(s.tmp.data(), L.b2, rows, d);
  cpu::AddInPlace(x2, s.tmp.data(), rows * d);
}

void ReformerRunner::Logits(const float* x1, const float* x2, size_t rows, float* out, bool decode) {
  const size_t d = config_.d_model, V = config_.vocab_size;
  Scratch& s = *scratch_;
  Resize(s.cat, rows * 2 * d);
  for (size_t r = 0; r < rows; ++r) {
    std::memcpy(&s.cat[r * 2 * d], x1 + r * d, d * sizeof(float));
    std::memcpy(&s.cat[r * 2 * d + d], x2 + r * d, d * sizeof(float));
  }
  LayerNorm(s.cat.data(), weights_->final_norm_weight(), weights_->final_norm_bias(), rows, 2 * d, config_.norm_eps,
            s.cat.data());
  Project(weights_->lm_head(), s.cat.data(), rows, out, decode || rows == 1);
  AddBias(out, weights_->lm_head_bias(), rows, V);
}

void ReformerRunner::Hash(int layer, const float* qk, int32_t* buckets) const {
  const ReformerConfig& r = config_.reformer;
  const int H = config_.num_heads, dh = config_.head_dim, nh = r.num_hashes, half = r.rotation_size() / 2;
  const float* rot = weights_->layer(layer).rotations;  // (H, dh, nh, half)
  thread_local std::vector<double> y;  // decode runs on the pool's threads
  y.resize(half);
  for (int h = 0; h < H; ++h) {
    const float* x = qk + h * dh;
    for (int rr = 0; rr < nh; ++rr) {
      // y = x . rotations[h][:, rr, :]
      std::fill(y.begin(), y.end(), 0.0);
      for (int i = 0; i < dh; ++i) {
        const float* row = rot + ((static_cast<size_t>(h) * dh + i) * nh + rr) * half;
        for (int j = 0; j < half; ++j) y[j] += static_cast<double>(x[i]) * row[j];
      }
      // Per factor f: argmax over [y_part; -y_part] (the first maximum wins), combined as
      // mixed-radix digits with the first factor least significant.
      int64_t bucket = 0, radix = 1;
      int offset = 0;
      for (int f : r.num_buckets) {
        const int fh = f / 2;
        int best = 0;
        double best_value = y[offset];
        for (int j = 1; j < f; ++j) {
          const double value = j < fh ? y[offset + j] : -y[offset + j - fh];
          if (value > best_value) {
            best_value = value;
            best = j;
          }
        }
        bucket += radix * best;
        radix *= f;
        offset += fh;
      }
      buckets[h * nh + rr] = static_cast<int32_t>(bucket);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Prefill: the full forward of the trainer.

void ReformerRunner::Prefill(const StepItem& item) {
  auto* state = static_cast<ReformerSequenceState*>(item.state);
  const ModelConfig& c = config_;
  const int64_t L = static_cast<int64_t>(item.tokens.size());
  const size_t d = c.d_model, A = c.attn_dim();
  Scratch& s = *scratch_;
  Resize(s.x1, L * d);
  Resize(s.x2, L * d);
  Resize(s.xn, L * d);
  Resize(s.q, L * A);
  Resize(s.k, L * A);
  Resize(s.v, L * A);
  Resize(s.attn, L * A);
  Resize(s.tmp, L * d);
  s.positions.resize(L);
  std::iota(s.positions.begin(), s.positions.end(), int64_t{0});
  Embed(item.tokens.data(), s.positions.data(), L, s.x1.data());
  std::memcpy(s.x2.data(), s.x1.data(), L * d * sizeof(float));
  for (int li = 0; li < c.num_layers; ++li) {
    const ReformerLayerWeights& W = weights_->layer(li);
    LayerNorm(s.x2.data(), W.attn_norm_weight, W.attn_norm_bias, L, d, c.norm_eps, s.xn.data());
    if (W.lsh) {
      pool_.Gemm(W.qk, s.xn.data(), L, s.q.data());
      pool_.Gemm(W.v, s.xn.data(), L, s.v.data());
      PrefillLsh(li, state, s.q.data(), s.v.data(), L, s.attn.data());
    } else {
      pool_.Gemm(W.q, s.xn.data(), L, s.q.data());
      pool_.Gemm(W.k, s.xn.data(), L, s.k.data());
      pool_.Gemm(W.v, s.xn.data(), L, s.v.data());
      PrefillLocal(li, state, s.q.data(), s.k.data(), s.v.data(), L, s.attn.data());
    }
    pool_.Gemm(W.out, s.attn.data(), L, s.tmp.data());
    cpu::AddInPlace(s.x1.data(), s.tmp.data(), L * d);
    FeedForward(li, s.x1.data(), s.x2.data(), L, /*decode=*/false);
  }
  state->set_position(L);
  if (item.logits == StepItem::Logits::kAll) {
    Logits(s.x1.data(), s.x2.data(), L, item.logits_out, /*decode=*/false);
  } else if (item.logits == StepItem::Logits::kLast) {
    Logits(s.x1.data() + (L - 1) * d, s.x2.data() + (L - 1) * d, 1, item.logits_out, /*decode=*/false);
  }
}

void ReformerRunner::PrefillLsh(int layer, ReformerSequenceState* state, const float* qk, const float* v,
                                int64_t L, float* out) {
  const ReformerConfig& r = config_.reformer;
  const int H = config_.num_heads, dh = config_.head_dim, nh = r.num_hashes;
  const int64_t A = config_.attn_dim(), c = r.lsh_chunk_length, nb = r.lsh_num_chunks_before;
  // Cache every token's [k̂ | v] and buckets (the buckets are cached even when L <= c, where
  // the output needs none, so that later windows can use them).
  std::vector<float> kv(L * 2 * A);
  std::vector<int32_t> buckets(L * H * nh);
  for (int64_t t = 0; t < L; ++t) {
    for (int h = 0; h < H; ++h) NormalizeKey(qk + t * A + h * dh, dh, &kv[t * 2 * A + h * dh]);
    std::memcpy(&kv[t * 2 * A + A], v + t * A, A * sizeof(float));
    Hash(layer, qk + t * A, &buckets[t * H * nh]);
  }
  for (int64_t t = 0; t < L; ++t) state->AppendLsh(layer, &kv[t * 2 * A], &buckets[t * H * nh]);
  const float* cache = state->layer(layer).kv.data();  // (L, 2A)
  auto khat = [&](int64_t p, int h) { return cache + p * 2 * A + h * dh; };
  auto value = [&](int64_t p, int h) { return cache + p * 2 * A + A + h * dh; };

  if (L <= c) {
    // One chunk: plain causal attention with the self mask, no rounds.
    pool_.ParallelFor(L, 8, [&](int64_t begin, int64_t end) {
      std::vector<float> logits(L);
      std::vector<const float*> keys(L), values(L);
      for (int64_t t = begin; t < end; ++t) {
        for (int h = 0; h < H; ++h) {
          for (int64_t j = 0; j <= t; ++j) {
            keys[j] = khat(j, h);
            values[j] = value(j, h);
          }
          cpu::DotRows(qk + t * A + h * dh, keys.data(), t, dh, logits.data());
          logits[t] = kSelfMaskValue;
          Attend(logits.data(), values.data(), t + 1, dh, out + t * A + h * dh);
        }
      }
    });
    return;
  }

  // The sorted, chunked forward. Each round lays out [the real tokens sorted by (bucket,
  // position)] + [P - L pad slots] (pads have the bucket past the last, so they sort last;
  // they are masked as keys and their outputs dropped); the nh rounds are concatenated into
  // one sequence of nh * P slots whose chunks of c attend to their nb previous chunks
  // (wrapping around from the first chunk to the last of the last round) and themselves.
  // A key after the query (causal mask, -1e9) or a pad contributes exp(-1e9 - max) = 0
  // exactly, since the query's own slot (-1e5) is always in its window; they are skipped.
  const int64_t P = PaddedLength(L);
  BS_CHECK(P % c == 0);
  const int64_t slots = nh * P, num_chunks = slots / c;
  pool_.ParallelFor(H, 1, [&](int64_t h_begin, int64_t h_end) {
    std::vector<int32_t> slot_pos(slots);
    // The rounds are combined on the fly (slots come round by round): per position the
    // largest lse so far, sum_r exp(lse_r - max) and sum_r exp(lse_r - max) * o_r, which is
    // softmax_r(lse_r) weighting without holding every round's output.
    std::vector<double> run_max(L), run_sum(L), run_acc(L * dh);
    std::vector<float> logits, o(dh);
    std::vector<const float*> keys, values;
    std::vector<int64_t> selves;
    std::vector<int32_t> order(L);
    for (int64_t h = h_begin; h < h_end; ++h) {
      for (int rr = 0; rr < nh; ++rr) {
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
          return buckets[static_cast<size_t>(a) * H * nh + h * nh + rr] <
                 buckets[static_cast<size_t>(b) * H * nh + h * nh + rr];
        });
        for (int64_t i = 0; i < P; ++i) slot_pos[rr * P + i] = i < L ? order[i] : -1;
      }
      std::fill(run_max.begin(), run_max.end(), -INFINITY);
      std::fill(run_sum.begin(), run_sum.end(), 0.0);
      std::fill(run_acc.begin(), run_acc.end(), 0.0);
      for (int64_t g = 0; g < slots; ++g) {
        const int32_t t = slot_pos[g];
        if (t < 0) continue;  // a pad query: dropped
        const float* q = qk + t * A + h * dh;
        keys.clear();
        values.clear();
        selves.clear();  // the query's own slots (more than one where the rounds wrap into each other)
        const int64_t chunk = g / c;
        for (int64_t back = nb; back >= 0; --back) {
          const int64_t kc = ((chunk - back) % num_chunks + num_chunks) % num_chunks;
          for (int64_t ks = kc * c; ks < (kc + 1) * c; ++ks) {
            const int32_t p = slot_pos[ks];
            if (p < 0 || p > t) continue;
            if (p == t) selves.push_back(static_cast<int64_t>(keys.size()));
            keys.push_back(khat(p, static_cast<int>(h)));
            values.push_back(value(p, static_cast<int>(h)));
          }
        }
        const int64_t n = static_cast<int64_t>(keys.size());
        logits.resize(n);
        cpu::DotRows(q, keys.data(), n, dh, logits.data());
        for (int64_t k : selves) logits[k] = kSelfMaskValue;
        const double lse = Attend(logits.data(), values.data(), n, dh, o.data());
        double* acc = &run_acc[t * dh];
        if (lse > run_max[t]) {
          const double rescale = std::exp(run_max[t] - lse);  // 0 for the first round
          run_sum[t] *= rescale;
          for (int i = 0; i < dh; ++i) acc[i] *= rescale;
          run_max[t] = lse;
        }
        const double w = std::exp(lse - run_max[t]);
        run_sum[t] += w;
        for (int i = 0; i < dh; ++i) acc[i] += w * o[i];
      }
      for (int64_t t = 0; t < L; ++t) {
        for (int i = 0; i < dh; ++i) out[t * A + h * dh + i] = static_cast<float>(run_acc[t * dh + i] / run_sum[t]);
      }
    }
  });
}

void ReformerRunner::PrefillLocal(int layer, ReformerSequenceState* state, const float* q, const float* k,
                                  const float* v, int64_t L, float* out) {
  const ReformerConfig& r = config_.reformer;
  const int H = config_.num_heads, dh = config_.head_dim;
  const int64_t A = config_.attn_dim(), cl = r.local_chunk_length, nb = r.local_num_chunks_before;
  const float inv_sqrt = static_cast<float>(1.0 / std::sqrt(static_cast<double>(dh)));
  std::vector<float> ks(L * A);
  for (int64_t i = 0; i < L * A; ++i) ks[i] = k[i] * inv_sqrt;
  // Position t attends to [c_l * (t / c_l - nb), t] clipped at 0: its chunk and the nb before
  // (padding, if any, comes after every real position and is never seen).
  pool_.ParallelFor(L, 8, [&](int64_t begin, int64_t end) {
    std::vector<float> logits(cl * (1 + nb));
    std::vector<const float*> keys(logits.size()), values(logits.size());
    for (int64_t t = begin; t < end; ++t) {
      const int64_t first = std::max<int64_t>(0, cl * (t / cl - nb)), n = t + 1 - first;
      for (int h = 0; h < H; ++h) {
        for (int64_t j = first; j <= t; ++j) {
          keys[j - first] = &ks[j * A + h * dh];
          values[j - first] = v + j * A + h * dh;
        }
        cpu::DotRows(q + t * A + h * dh, keys.data(), n, dh, logits.data());
        Attend(logits.data(), values.data(), n, dh, out + t * A + h * dh);
      }
    }
  });
  // The ring keeps the last R positions.
  float* ring = state->layer(layer).kv.data();
  const int64_t R = shape_.ring_rows;
  for (int64_t t = std::max<int64_t>(0, L - R); t < L; ++t) {
    float* row = ring + (t % R) * 2 * A;
    std::memcpy(row, &ks[t * A], A * sizeof(float));
    std::memcpy(row + A, v + t * A, A * sizeof(float));
  }
}

// ---------------------------------------------------------------------------------------------
// Decode: the cached step (trainer's ReformerDecodeReference::Step).

void ReformerRunner::DecodeLsh(int layer, ReformerSequenceState* state, const float* qk, const float* v,
                               float* out) const {
  const ReformerConfig& r = config_.reformer;
  const int H = config_.num_heads, dh = config_.head_dim, nh = r.num_hashes;
  const int64_t A = config_.attn_dim(), c = r.lsh_chunk_length;
  const int64_t W = c * (1 + r.lsh_num_chunks_before);
  const int64_t L = state->position(), n = L + 1;
  AttendScratch& s = ThreadAttendScratch();
  Resize(s.kv, 2 * A);
  s.buckets.resize(H * nh);
  for (int h = 0; h < H; ++h) NormalizeKey(qk + h * dh, dh, &s.kv[h * dh]);
  std::memcpy(&s.kv[A], v, A * sizeof(float));
  Hash(layer, qk, s.buckets.data());
  if (n > c) state->EnsureIndex(layer);  // before appending: the index then gets the token too
  state->AppendLsh(layer, s.kv.data(), s.buckets.data());
  const float* cache = state->layer(layer).kv.data();  // (n, 2A): [k̂ | v] per token
  auto khat = [&](int64_t p, int h) { return cache + p * 2 * A + h * dh; };
  auto value = [&](int64_t p, int h) { return cache + p * 2 * A + A + h * dh; };

  if (n <= c) {
    // Within one chunk: plain attention over every token (as the full forward).
    Resize(s.logits, n);
    s.keys.resize(n);
    s.values.resize(n);
    for (int h = 0; h < H; ++h) {
      for (int64_t p = 0; p < n; ++p) {
        s.keys[p] = khat(p, h);
        s.values[p] = value(p, h);
      }
      cpu::DotRows(qk + h * dh, s.keys.data(), n - 1, dh, s.logits.data());
      s.logits[L] = kSelfMaskValue;
      Attend(s.logits.data(), s.values.data(), n, dh, out + h * dh);
    }
    return;
  }

  // Every (head, round)'s window first: the new token is the last of its bucket, so its sorted
  // rank is #{buckets <= b} - 1 over the n tokens; the window is the W slots from
  // (rank / c - nb) * c, wrapping within the round.
  const ReformerLayerCache& lc = state->layer(layer);
  const int HR = H * nh;
  s.window.resize(HR * W);
  for (int hr = 0; hr < HR; ++hr) {
    const LshBucketIndex& index = lc.index[hr];
    const int64_t rank = index.CountAtMost(s.buckets[hr]) - 1;
    index.Window((rank / c - r.lsh_num_chunks_before) * c, W, &s.window[hr * W]);
  }
  // The windows' rows lie scattered over the cache (DRAM at long contexts). The key reads of
  // the logits are independent of each other, so out-of-order execution overlaps their misses
  // (prefetching the keys ahead measured no faster); the window's values are prefetched in
  // groups while the logits are computed, so that they arrive before the weighted sum.
  constexpr int64_t kGroup = 16;
  const size_t row_bytes = dh * sizeof(float);
  Resize(s.logits, W);
  Resize(s.o, nh * dh);
  s.keys.resize(W);
  s.values.resize(W);
  s.lse.resize(nh);
  for (int h = 0; h < H; ++h) {
    const float* q = qk + h * dh;
    for (int rr = 0; rr < nh; ++rr) {
      const int64_t base = (h * nh + rr) * W;
      const int32_t* window = &s.window[base];
      for (int64_t k = 0; k < W; ++k) {
        s.keys[k] = khat(window[k], h);
        s.values[k] = value(window[k], h);
      }
      for (int64_t k0 = 0; k0 < W; k0 += kGroup) {
        const int64_t k1 = std::min(W, k0 + kGroup);
        for (int64_t k = k0; k < k1; ++k) PrefetchLines(s.values[k], row_bytes);
        cpu::DotRows(q, &s.keys[k0], k1 - k0, dh, &s.logits[k0]);
      }
      for (int64_t k = 0; k < W; ++k) {
        if (window[k] == L) s.logits[k] = kSelfMaskValue;
      }
      s.lse[rr] = Attend(s.logits.data(), s.values.data(), W, dh, &s.o[rr * dh]);
    }
    CombineRounds(s.lse.data(), s.o.data(), nh, dh, out + h * dh);
  }
}

void ReformerRunner::DecodeLocal(int layer, ReformerSequenceState* state, const float* q, const float* k,
                                 const float* v, float* out) const {
  const ReformerConfig& r = config_.reformer;
  const int H = config_.num_heads, dh = config_.head_dim;
  const int64_t A = config_.attn_dim(), cl = r.local_chunk_length, R = shape_.ring_rows;
  const int64_t L = state->position();
  const float inv_sqrt = static_cast<float>(1.0 / std::sqrt(static_cast<double>(dh)));
  float* ring = state->layer(layer).kv.data();
  float* row = ring + (L % R) * 2 * A;
  for (int64_t i = 0; i < A; ++i) row[i] = k[i] * inv_sqrt;
  std::memcpy(row + A, v, A * sizeof(float));
  // Positions [c_l * (L / c_l - nb), L] clipped at 0: at most R of them, all in the ring.
  const int64_t first = std::max<int64_t>(0, cl * (L / cl - r.local_num_chunks_before));
  const int64_t n = L + 1 - first;
  AttendScratch& s = ThreadAttendScratch();
  Resize(s.logits, n);
  s.keys.resize(n);
  s.values.resize(n);
  for (int h = 0; h < H; ++h) {
    for (int64_t p = first; p <= L; ++p) {
      const float* kr = ring + (p % R) * 2 * A;
      s.keys[p - first] = kr + h * dh;
      s.values[p - first] = kr + A + h * dh;
    }
    cpu::DotRows(q + h * dh, s.keys.data(), n, dh, s.logits.data());
    Attend(s.logits.data(), s.values.data(), n, dh, out + h * dh);
  }
}

void ReformerRunner::DecodeBatch(const std::vector<const StepItem*>& items) {
  const ModelConfig& c = config_;
  const size_t B = items.size();
  const size_t d = c.d_model, A = c.attn_dim(), V = c.vocab_size;
  Scratch& s = *scratch_;
  Resize(s.x1, B * d);
  Resize(s.x2, B * d);
  Resize(s.xn, B * d);
  Resize(s.q, B * A);
  Resize(s.k, B * A);
  Resize(s.v, B * A);
  Resize(s.attn, B * A);
  Resize(s.tmp, B * d);
  s.ids.resize(B);
  s.positions.resize(B);
  std::vector<ReformerSequenceState*>& states = s.states;
  states.resize(B);
  for (size_t b = 0; b < B; ++b) {
    states[b] = static_cast<ReformerSequenceState*>(items[b]->state);
    s.ids[b] = items[b]->tokens[0];
    s.positions[b] = states[b]->position();
  }
  Embed(s.ids.data(), s.positions.data(), B, s.x1.data());
  std::memcpy(s.x2.data(), s.x1.data(), B * d * sizeof(float));
  for (int li = 0; li < c.num_layers; ++li) {
    const ReformerLayerWeights& W = weights_->layer(li);
    LayerNorm(s.x2.data(), W.attn_norm_weight, W.attn_norm_bias, B, d, c.norm_eps, s.xn.data());
    if (W.lsh) {
      pool_.MatVec(W.qk, s.xn.data(), B, s.q.data());
    } else {
      pool_.MatVec(W.q, s.xn.data(), B, s.q.data());
      pool_.MatVec(W.k, s.xn.data(), B, s.k.data());
    }
    pool_.MatVec(W.v, s.xn.data(), B, s.v.data());
    pool_.ParallelFor(B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        if (W.lsh) {
          DecodeLsh(li, states[b], &s.q[b * A], &s.v[b * A], &s.attn[b * A]);
        } else {
          DecodeLocal(li, states[b], &s.q[b * A], &s.k[b * A], &s.v[b * A], &s.attn[b * A]);
        }
      }
    });
    pool_.MatVec(W.out, s.attn.data(), B, s.tmp.data());
    cpu::AddInPlace(s.x1.data(), s.tmp.data(), B * d);
    FeedForward(li, s.x1.data(), s.x2.data(), B, /*decode=*/true);
  }
  for (ReformerSequenceState* st : states) st->set_position(st->position() + 1);
  // Logits of the rows that want them, computed together (a row's logits do not depend on
  // the batch). Rows are compacted only when some want none.
  s.rows.clear();
  for (size_t b = 0; b < B; ++b) {
    if (items[b]->logits != StepItem::Logits::kNone) s.rows.push_back(b);
  }
  if (s.rows.empty()) return;
  const size_t R = s.rows.size();
  if (R < B) {  // compact the rows in place (rows[r] >= r)
    for (size_t r = 0; r < R; ++r) {
      std::memmove(&s.x1[r * d], &s.x1[s.rows[r] * d], d * sizeof(float));
      std::memmove(&s.x2[r * d], &s.x2[s.rows[r] * d], d * sizeof(float));
    }
  }
  Resize(s.logits, R * V);
  Logits(s.x1.data(), s.x2.data(), R, s.logits.data(), /*decode=*/true);
  for (size_t r = 0; r < R; ++r) {
    std::memcpy(items[s.rows[r]]->logits_out, &s.logits[r * V], V * sizeof(float));
  }
}

}  // namespace blockserve
