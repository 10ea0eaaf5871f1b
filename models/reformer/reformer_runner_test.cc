// ReformerRunner on seeded random checkpoints: the bucket index against a brute-force sort,
// prefill and cached steps against a scalar reference of their definitions (with padding),
// decode == prefill where they coincide, batch invariance, snapshots, state size, input
// errors. (Agreement with the libtorch trainer: tests/integration.)
#include "models/reformer/reformer_runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "base/safetensors.h"
#include "gtest/gtest.h"
#include "models/model_dir.h"
#include "models/model_runner_factory.h"
#include "models/synthetic_checkpoint.h"
#include "testing/test_util.h"

namespace blockserve {
namespace {

using engine::ModelRunner;
using engine::SequenceState;
using engine::StepItem;

constexpr ReformerAttention kLsh = ReformerAttention::kLsh;
constexpr ReformerAttention kLocal = ReformerAttention::kLocal;

// ---------------------------------------------------------------------------------------------
// LshBucketIndex

// Positions 0..n-1 sorted by (bucket, position).
std::vector<int32_t> BruteForceOrder(const std::vector<int>& buckets) {
  std::vector<int32_t> order(buckets.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return buckets[a] < buckets[b]; });
  return order;
}

TEST(LshBucketIndexTest, MatchesABruteForceStableSort) {
  std::mt19937 rng(5);
  for (int num_buckets : {1, 2, 8, 16, 100, 4096}) {
    for (int n : {1, 2, 3, 5, 7, 8, 9, 16, 31, 64, 100, 257}) {
      // Uniform buckets, and buckets crowded into a few values (many empty buckets).
      for (int crowd : {0, 3}) {
        LshBucketIndex index(num_buckets);
        std::vector<int> buckets;
        for (int t = 0; t < n; ++t) {
          const int b = crowd ? static_cast<int>(rng() % crowd) * (num_buckets / crowd + 1) % num_buckets
                              : static_cast<int>(rng() % num_buckets);
          buckets.push_back(b);
          index.Append(b, t);
          ASSERT_EQ(index.size(), t + 1);
          // The newest token is the last of its bucket.
          ASSERT_EQ(index.At(index.CountAtMost(b) - 1), t);
        }
        const std::vector<int32_t> order = BruteForceOrder(buckets);
        for (int s = 0; s < n; ++s) ASSERT_EQ(index.At(s), order[s]) << "NB=" << num_buckets << " n=" << n;
        for (int b = 0; b < num_buckets; b += std::max(1, num_buckets / 50)) {
          const int64_t want = std::count_if(buckets.begin(), buckets.end(), [&](int x) { return x <= b; });
          ASSERT_EQ(index.CountAtMost(b), want);
        }
        ASSERT_EQ(index.CountAtMost(num_buckets - 1), n);
        // Windows at every kind of start (negative, past the end), shorter and longer than n.
        for (int trial = 0; trial < 20; ++trial) {
          const int64_t start = static_cast<int64_t>(rng() % (4 * n + 1)) - 2 * n;
          const int64_t count = 1 + static_cast<int64_t>(rng() % (3 * n + 8));
          std::vector<int32_t> window(count);
          index.Window(start, count, window.data());
          for (int64_t k = 0; k < count; ++k) {
            const int64_t slot = (((start + k) % n) + n) % n;
            ASSERT_EQ(window[k], order[slot]) << "NB=" << num_buckets << " n=" << n << " start=" << start
                                              << " k=" << k;
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Models

// d = 32 (axial 16 + 16), H = 2 x dh = 8, V = 64, F = 48, 256 positions (axial 16 x 16).
ModelConfig TinyConfig(std::vector<ReformerAttention> layers, int lsh_chunk = 4, int local_chunk = 4,
                       std::vector<int> num_buckets = {8}, int num_hashes = 2) {
  ModelConfig c;
  c.family = ModelFamily::kReformer;
  c.vocab_size = 64;
  c.d_model = 32;
  c.num_layers = static_cast<int>(layers.size());
  c.num_heads = 2;
  c.head_dim = 8;
  c.ffn_dim = 48;
  c.norm_eps = 1e-12f;
  ReformerConfig& r = c.reformer;
  r.attn_layers = std::move(layers);
  r.lsh_chunk_length = lsh_chunk;
  r.local_chunk_length = local_chunk;
  r.num_hashes = num_hashes;
  r.num_buckets = std::move(num_buckets);
  r.axial_pos_shape = {16, 16};
  r.axial_pos_embds_dim = {16, 16};
  r.max_position_embeddings = 256;
  r.hidden_act = Activation::kGelu;
  return c;
}

struct Model {
  std::string dir;
  std::unique_ptr<ModelRunner> runner;
  ReformerRunner* reformer = nullptr;
};

Model MakeModel(const ModelConfig& config, uint64_t seed = 7, int threads = 2) {
  Model m;
  m.dir = testing::MakeTempDir("reformer_runner");
  const absl::Status written = WriteSyntheticModelDir(config, m.dir, seed, DType::kF32, /*stddev=*/0.3f);
  EXPECT_TRUE(written.ok()) << written;
  RunnerOptions options;
  options.num_threads = threads;
  auto runner = LoadModelRunner(m.dir, options);
  EXPECT_TRUE(runner.ok()) << runner.status();
  if (runner.ok()) {
    m.runner = *std::move(runner);
    m.reformer = dynamic_cast<ReformerRunner*>(m.runner.get());
  }
  return m;
}

std::vector<int32_t> RandomTokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = static_cast<int32_t>(rng() % vocab);
  return t;
}

// Logits after every token, fed in items of the given sizes (cycled).
std::vector<float> RunChunks(ModelRunner& runner, SequenceState* state, const std::vector<int32_t>& tokens,
                             const std::vector<int>& chunks) {
  const int V = runner.info().vocab_size;
  std::vector<float> logits(tokens.size() * V);
  size_t done = 0, c = 0;
  while (done < tokens.size()) {
    const size_t n = std::min<size_t>(chunks[c++ % chunks.size()], tokens.size() - done);
    StepItem item;
    item.state = state;
    item.tokens = absl::MakeConstSpan(tokens).subspan(done, n);
    item.logits = StepItem::Logits::kAll;
    item.logits_out = &logits[done * V];
    const absl::Status s = runner.Execute({&item, 1});
    EXPECT_TRUE(s.ok()) << s;
    done += n;
  }
  return logits;
}

float MaxAbsDiff(const float* a, const float* b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}
float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  return MaxAbsDiff(a.data(), b.data(), std::min(a.size(), b.size()));
}

int Argmax(const float* x, int n) { return static_cast<int>(std::max_element(x, x + n) - x); }

// ---------------------------------------------------------------------------------------------
// A scalar double-precision reference of the definitions (docs/reformer-decoding.md), read
// straight from the checkpoint: the first `prefill` tokens through the full forward (padded
// sorted-chunk rule, masks by replacement), every later token through the cached step
// (windows from a brute-force re-sort of the round). Each token's layer outputs are computed
// once, so the whole model can be evaluated layer by layer over all tokens.
class ScalarReference {
 public:
  ScalarReference(const ModelConfig& c, const std::string& dir) : c_(c) {
    auto file = SafetensorsFile::Open(dir + "/" + kWeightsFileName);
    EXPECT_TRUE(file.ok()) << file.status();
    file_ = *std::move(file);
  }

  // Logits (N, V) of tokens whose first `prefill` tokens form the first item.
  std::vector<float> Logits(const std::vector<int32_t>& tokens, int prefill) const {
    const ReformerConfig& r = c_.reformer;
    const int N = static_cast<int>(tokens.size()), d = c_.d_model, A = c_.attn_dim(), V = c_.vocab_size;
    const int n2 = r.axial_pos_shape[1], d1 = r.axial_pos_embds_dim[0], d2 = r.axial_pos_embds_dim[1];
    Mat x1(N, Vec(d)), x2;
    for (int t = 0; t < N; ++t) {
      for (int i = 0; i < d; ++i) {
        x1[t][i] = T("embed.weight")[tokens[t] * d + i] +
                   (i < d1 ? T("pos.axial.0")[(t / n2) * d1 + i] : T("pos.axial.1")[(t % n2) * d2 + i - d1]);
      }
    }
    x2 = x1;
    for (int li = 0; li < c_.num_layers; ++li) {
      const std::string p = "layers." + std::to_string(li) + ".";
      Mat h(N), o(N, Vec(A, 0.0));
      for (int t = 0; t < N; ++t) h[t] = LayerNorm(x2[t], p + "attn_norm");
      if (r.attn_layers[li] == kLsh) {
        Lsh(p, h, prefill, &o);
      } else {
        Local(p, h, &o);
      }
      for (int t = 0; t < N; ++t) {
        const Vec a = Linear(p + "attn.out.weight", o[t], d);
        for (int i = 0; i < d; ++i) x1[t][i] += a[i];
        Vec f = Linear(p + "ffn.w1.weight", LayerNorm(x1[t], p + "ffn_norm"), c_.ffn_dim);
        for (int i = 0; i < c_.ffn_dim; ++i) {
          f[i] += T(p + "ffn.w1.bias")[i];
          f[i] = 0.5 * f[i] * (1.0 + std::erf(f[i] / std::sqrt(2.0)));
        }
        const Vec g = Linear(p + "ffn.w2.weight", f, d);
        for (int i = 0; i < d; ++i) x2[t][i] += g[i] + T(p + "ffn.w2.bias")[i];
      }
    }
    std::vector<float> logits(static_cast<size_t>(N) * V);
    for (int t = 0; t < N; ++t) {
      Vec cat = x1[t];
      cat.insert(cat.end(), x2[t].begin(), x2[t].end());
      const Vec y = Linear("lm_head.weight", LayerNorm(cat, "final_norm"), V);
      for (int v = 0; v < V; ++v) logits[t * V + v] = static_cast<float>(y[v] + T("lm_head.bias")[v]);
    }
    return logits;
  }

 private:
  using Vec = std::vector<double>;
  using Mat = std::vector<Vec>;

  const float* T(const std::string& name) const { return static_cast<const float*>(file_->Get(name)->data); }

  Vec LayerNorm(const Vec& x, const std::string& name) const {
    const size_t n = x.size();
    double mean = 0, var = 0;
    for (double v : x) mean += v;
    mean /= n;
    for (double v : x) var += (v - mean) * (v - mean);
    var /= n;
    Vec out(n);
    for (size_t i = 0; i < n; ++i) {
      out[i] = (x[i] - mean) / std::sqrt(var + c_.norm_eps) * T(name + ".weight")[i] + T(name + ".bias")[i];
    }
    return out;
  }

  Vec Linear(const std::string& name, const Vec& x, int rows) const {
    const float* w = T(name);
    Vec y(rows, 0.0);
    for (int o = 0; o < rows; ++o) {
      for (size_t i = 0; i < x.size(); ++i) y[o] += w[o * x.size() + i] * x[i];
    }
    return y;
  }

  // logsumexp and softmax average of one query over (logit, value) pairs.
  static double Softmax(const Vec& logits, const std::vector<const Vec*>& values, Vec* out) {
    double mx = -INFINITY, sum = 0;
    for (double l : logits) mx = std::max(mx, l);
    std::fill(out->begin(), out->end(), 0.0);
    for (size_t j = 0; j < logits.size(); ++j) {
      const double e = std::exp(logits[j] - mx);
      sum += e;
      for (size_t i = 0; i < out->size(); ++i) (*out)[i] += e * (*values[j])[i];
    }
    for (double& v : *out) v /= sum;
    return mx + std::log(sum);
  }

  // The lcm padding rule, written out independently of the runner.
  int Padded(int L) const {
    const ReformerConfig& r = c_.reformer;
    int m = 1, min_chunk = 1 << 30;
    for (ReformerAttention a : r.attn_layers) {
      const int ch = a == kLsh ? r.lsh_chunk_length : r.local_chunk_length;
      m = std::lcm(m, ch);
      min_chunk = std::min(min_chunk, ch);
    }
    return (L > min_chunk && L % m != 0) ? (L + m - 1) / m * m : L;
  }

  void Lsh(const std::string& p, const Mat& h, int prefill, Mat* o) const {
    const ReformerConfig& r = c_.reformer;
    const int N = static_cast<int>(h.size()), H = c_.num_heads, dh = c_.head_dim, A = c_.attn_dim();
    const int nh = r.num_hashes, c = r.lsh_chunk_length, nb = r.lsh_num_chunks_before, half = r.rotation_size() / 2;
    const int NB = r.total_buckets();
    const float* rot = T(p + "attn.rotations");
    // Per token and head: raw q, unit key, value, buckets per round.
    std::vector<std::vector<Vec>> q(N, std::vector<Vec>(H)), k(N, std::vector<Vec>(H)), v(N, std::vector<Vec>(H));
    std::vector<std::vector<std::vector<int>>> bucket(N, std::vector<std::vector<int>>(H, std::vector<int>(nh)));
    for (int t = 0; t < N; ++t) {
      const Vec qk = Linear(p + "attn.qk.weight", h[t], A), vv = Linear(p + "attn.v.weight", h[t], A);
      for (int hh = 0; hh < H; ++hh) {
        q[t][hh].assign(qk.begin() + hh * dh, qk.begin() + (hh + 1) * dh);
        v[t][hh].assign(vv.begin() + hh * dh, vv.begin() + (hh + 1) * dh);
        double ss = 0;
        for (double x : q[t][hh]) ss += x * x;
        k[t][hh] = q[t][hh];
        for (double& x : k[t][hh]) x /= std::sqrt(ss / dh + 1e-6) * std::sqrt(static_cast<double>(dh));
        for (int rr = 0; rr < nh; ++rr) {
          Vec y(half, 0.0);
          for (int i = 0; i < dh; ++i) {
            for (int j = 0; j < half; ++j) y[j] += q[t][hh][i] * rot[((hh * dh + i) * nh + rr) * half + j];
          }
          int b = 0, radix = 1, off = 0;
          for (int f : r.num_buckets) {
            Vec signed_y;
            for (int j = 0; j < f / 2; ++j) signed_y.push_back(y[off + j]);
            for (int j = 0; j < f / 2; ++j) signed_y.push_back(-y[off + j]);
            b += radix * static_cast<int>(std::max_element(signed_y.begin(), signed_y.end()) - signed_y.begin());
            radix *= f;
            off += f / 2;
          }
          bucket[t][hh][rr] = b;
        }
      }
    }
    Vec out(dh);
    for (int hh = 0; hh < H; ++hh) {
      // The prefill: one sequence of nh rounds of P slots each (pads: bucket NB, positions >= L).
      const int L = prefill;
      if (L <= c) {
        for (int t = 0; t < L; ++t) {
          Vec logits;
          std::vector<const Vec*> vals;
          for (int j = 0; j < L; ++j) {
            logits.push_back(j > t ? -1e9 : j == t ? -1e5 : Dot(q[t][hh], k[j][hh]));
            vals.push_back(&v[j][hh]);
          }
          Softmax(logits, vals, &out);
          for (int i = 0; i < dh; ++i) (*o)[t][hh * dh + i] = out[i];
        }
      } else {
        const int P = Padded(L), total = nh * P, chunks = total / c;
        std::vector<int> slot_pos(total);
        for (int rr = 0; rr < nh; ++rr) {
          std::vector<std::pair<int64_t, int>> keys;  // (bucket * P + position, position)
          for (int t = 0; t < P; ++t) keys.push_back({int64_t{t < L ? bucket[t][hh][rr] : NB} * P + t, t});
          std::sort(keys.begin(), keys.end());
          for (int i = 0; i < P; ++i) slot_pos[rr * P + i] = keys[i].second;
        }
        Mat o_r(static_cast<size_t>(L) * nh, Vec(dh));
        Vec lse(static_cast<size_t>(L) * nh);
        for (int g = 0; g < total; ++g) {
          const int t = slot_pos[g], rr = g / P;
          if (t >= L) continue;
          Vec logits;
          std::vector<const Vec*> vals;
          static const Vec kZero(64, 0.0);
          for (int back = nb; back >= 0; --back) {
            const int kc = ((g / c - back) % chunks + chunks) % chunks;
            for (int s = kc * c; s < (kc + 1) * c; ++s) {
              const int j = slot_pos[s];
              logits.push_back(j > t ? -1e9 : j == t ? -1e5 : Dot(q[t][hh], k[j][hh]));
              vals.push_back(j < L ? &v[j][hh] : &kZero);
            }
          }
          lse[t * nh + rr] = Softmax(logits, vals, &o_r[t * nh + rr]);
        }
        for (int t = 0; t < L; ++t) Combine(&lse[t * nh], &o_r[t * nh], nh, &(*o)[t], hh * dh);
      }
      // Cached steps.
      for (int t = prefill; t < N; ++t) {
        const int n = t + 1;
        if (n <= c) {
          Vec logits;
          std::vector<const Vec*> vals;
          for (int j = 0; j <= t; ++j) {
            logits.push_back(j == t ? -1e5 : Dot(q[t][hh], k[j][hh]));
            vals.push_back(&v[j][hh]);
          }
          Softmax(logits, vals, &out);
          for (int i = 0; i < dh; ++i) (*o)[t][hh * dh + i] = out[i];
          continue;
        }
        Mat o_r(nh, Vec(dh));
        Vec lse(nh);
        for (int rr = 0; rr < nh; ++rr) {
          std::vector<int> b(n);
          for (int j = 0; j < n; ++j) b[j] = bucket[j][hh][rr];
          const std::vector<int32_t> order = BruteForceOrder(b);
          const int s = static_cast<int>(std::find(order.begin(), order.end(), t) - order.begin());
          const int start = (s / c - nb) * c;
          Vec logits;
          std::vector<const Vec*> vals;
          for (int kk = 0; kk < c * (1 + nb); ++kk) {
            const int j = order[((start + kk) % n + n) % n];
            logits.push_back(j == t ? -1e5 : Dot(q[t][hh], k[j][hh]));
            vals.push_back(&v[j][hh]);
          }
          lse[rr] = Softmax(logits, vals, &o_r[rr]);
        }
        Combine(lse.data(), o_r.data(), nh, &(*o)[t], hh * dh);
      }
    }
  }

  void Local(const std::string& p, const Mat& h, Mat* o) const {
    const ReformerConfig& r = c_.reformer;
    const int N = static_cast<int>(h.size()), H = c_.num_heads, dh = c_.head_dim, A = c_.attn_dim();
    const int cl = r.local_chunk_length;
    Mat q(N), k(N), v(N);
    for (int t = 0; t < N; ++t) {
      q[t] = Linear(p + "attn.q.weight", h[t], A);
      k[t] = Linear(p + "attn.k.weight", h[t], A);
      v[t] = Linear(p + "attn.v.weight", h[t], A);
    }
    Vec out(dh);
    for (int t = 0; t < N; ++t) {
      for (int hh = 0; hh < H; ++hh) {
        Vec logits;
        std::vector<Vec> vs;
        for (int j = std::max(0, cl * (t / cl - r.local_num_chunks_before)); j <= t; ++j) {
          double dot = 0;
          for (int i = 0; i < dh; ++i) dot += q[t][hh * dh + i] * k[j][hh * dh + i] / std::sqrt(double(dh));
          logits.push_back(dot);
          vs.emplace_back(v[j].begin() + hh * dh, v[j].begin() + (hh + 1) * dh);
        }
        std::vector<const Vec*> vals;
        for (const Vec& x : vs) vals.push_back(&x);
        Softmax(logits, vals, &out);
        for (int i = 0; i < dh; ++i) (*o)[t][hh * dh + i] = out[i];
      }
    }
  }

  static double Dot(const Vec& a, const Vec& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
  }

  static void Combine(const double* lse, const Vec* o_r, int nh, Vec* out, int col) {
    double mx = -INFINITY, total = 0;
    for (int r = 0; r < nh; ++r) mx = std::max(mx, lse[r]);
    for (int r = 0; r < nh; ++r) total += std::exp(lse[r] - mx);
    for (size_t i = 0; i < o_r[0].size(); ++i) {
      double acc = 0;
      for (int r = 0; r < nh; ++r) acc += std::exp(lse[r] - mx) / total * o_r[r][i];
      (*out)[col + i] = acc;
    }
  }

  ModelConfig c_;
  std::unique_ptr<SafetensorsFile> file_;
};

// ---------------------------------------------------------------------------------------------
// Tests

TEST(ReformerRunnerTest, PrefillAndCachedStepsMatchAScalarReference) {
  struct Case {
    const char* name;
    ModelConfig config;
    int prefill, total;
  };
  const Case cases[] = {
      // 10 tokens, chunk 4: padded to 12; the last round's last chunk holds pads only partly.
      {"lsh1_padded", TinyConfig({kLsh}), 10, 22},
      // 6 tokens, chunk 4: padded to 8, one chunk of pads per round.
      {"lsh1_short_padded", TinyConfig({kLsh}), 5, 14},
      {"lsh1_unpadded", TinyConfig({kLsh}), 12, 20},
      {"lsh1_one_chunk", TinyConfig({kLsh}), 3, 12},
      {"mixed_factored", TinyConfig({kLsh, kLocal, kLsh}, 4, 4, {4, 4}), 13, 26},
      // Local chunk 6, LSH chunk 4: m = 12, so 8 tokens (a multiple of 4) still get 4 pads.
      {"mixed_lcm", TinyConfig({kLocal, kLsh}, 4, 6, {8}, 3), 8, 20},
      {"one_round", TinyConfig({kLsh, kLsh}, 8, 4, {16}, 1), 19, 30},
  };
  for (const Case& tc : cases) {
    Model m = MakeModel(tc.config);
    ASSERT_NE(m.runner, nullptr) << tc.name;
    const std::vector<int32_t> tokens = RandomTokens(tc.total, 64, 11);
    auto state = m.runner->NewState();
    std::vector<int> chunks = {tc.prefill};
    chunks.insert(chunks.end(), tc.total, 1);
    const std::vector<float> got = RunChunks(*m.runner, state.get(), tokens, chunks);
    const std::vector<float> want = ScalarReference(tc.config, m.dir).Logits(tokens, tc.prefill);
    for (int t = 0; t < tc.total; ++t) {
      EXPECT_LE(MaxAbsDiff(&got[t * 64], &want[t * 64], 64), 1e-4f) << tc.name << " position " << t;
    }
    // Not degenerate: the logits vary across positions.
    EXPECT_GT(MaxAbsDiff(&got[0], &got[(tc.total - 1) * 64], 64), 1e-3f) << tc.name;
  }
}

TEST(ReformerRunnerTest, LocalOnlyDecodeEqualsPrefill) {
  Model m = MakeModel(TinyConfig({kLocal, kLocal, kLocal}, 4, 4));
  const std::vector<int32_t> tokens = RandomTokens(37, 64, 3);
  for (int prefill : {37, 13, 16, 3}) {  // padded, padded, whole chunks, one chunk
    auto a = m.runner->NewState(), b = m.runner->NewState(), c = m.runner->NewState();
    std::vector<float> full(37 * 64);
    {
      auto s = m.runner->NewState();
      full = RunChunks(*m.runner, s.get(), tokens, {37});
    }
    const std::vector<float> one_by_one = RunChunks(*m.runner, a.get(), tokens, {1});
    const std::vector<float> mixed = RunChunks(*m.runner, b.get(), tokens, {prefill, 5, 1, 7, 2});
    EXPECT_LE(MaxAbsDiff(full, one_by_one), 1e-4f) << prefill;
    EXPECT_LE(MaxAbsDiff(full, mixed), 1e-4f) << prefill;
    EXPECT_EQ(a->position(), 37);
    EXPECT_EQ(b->position(), 37);
  }
}

TEST(ReformerRunnerTest, PaddedLocalPrefillEqualsAPrefixOfALongerOne) {
  Model m = MakeModel(TinyConfig({kLocal, kLocal}, 4, 4));
  EXPECT_EQ(m.reformer->PaddedLength(13), 16);
  EXPECT_EQ(m.reformer->PaddedLength(3), 3);
  EXPECT_EQ(m.reformer->PaddedLength(16), 16);
  const std::vector<int32_t> tokens = RandomTokens(16, 64, 4);
  auto a = m.runner->NewState(), b = m.runner->NewState();
  const std::vector<float> longer = RunChunks(*m.runner, a.get(), tokens, {16});
  const std::vector<int32_t> prefix(tokens.begin(), tokens.begin() + 13);
  const std::vector<float> shorter = RunChunks(*m.runner, b.get(), prefix, {13});
  EXPECT_LE(MaxAbsDiff(shorter.data(), longer.data(), 13 * 64), 1e-5f);
}

TEST(ReformerRunnerTest, ContextsWithinOneChunkDecodeEqualsPrefill) {
  // LSH chunk 8, local chunk 4: prefills up to 8 tokens are plain attention in LSH layers.
  Model m = MakeModel(TinyConfig({kLsh, kLocal, kLsh}, 8, 4, {4, 4}));
  const std::vector<int32_t> tokens = RandomTokens(8, 64, 6);
  for (int n = 1; n <= 8; ++n) {
    const std::vector<int32_t> t(tokens.begin(), tokens.begin() + n);
    auto a = m.runner->NewState(), b = m.runner->NewState();
    const std::vector<float> prefill = RunChunks(*m.runner, a.get(), t, {n});
    const std::vector<float> decode = RunChunks(*m.runner, b.get(), t, {1});
    EXPECT_LE(MaxAbsDiff(prefill, decode), 1e-4f) << n;
  }
}

TEST(ReformerRunnerTest, MultiTokenItemsEqualTokenByToken) {
  Model m = MakeModel(TinyConfig({kLsh, kLocal, kLsh}, 4, 4, {4, 4}));
  const std::vector<int32_t> tokens = RandomTokens(40, 64, 7);
  auto a = m.runner->NewState(), b = m.runner->NewState();
  const std::vector<float> items = RunChunks(*m.runner, a.get(), tokens, {10, 7, 1, 9, 13});
  std::vector<int> chunks = {10};
  chunks.insert(chunks.end(), 30, 1);
  const std::vector<float> single = RunChunks(*m.runner, b.get(), tokens, chunks);
  EXPECT_EQ(items, single);  // bit-identical
  EXPECT_EQ(*m.runner->SerializeState(*a), *m.runner->SerializeState(*b));
  // kLast of a multi-token item is the last row of kAll.
  auto c = m.runner->NewState();
  RunChunks(*m.runner, c.get(), std::vector<int32_t>(tokens.begin(), tokens.begin() + 10), {10});
  std::vector<float> last(64);
  StepItem item{c.get(), absl::MakeConstSpan(tokens).subspan(10, 30), StepItem::Logits::kLast, last.data()};
  ASSERT_TRUE(m.runner->Execute({&item, 1}).ok());
  EXPECT_EQ(last, std::vector<float>(single.end() - 64, single.end()));
}

TEST(ReformerRunnerTest, BatchInvariance) {
  Model m = MakeModel(TinyConfig({kLsh, kLocal, kLsh}, 4, 4, {8}));
  const int V = 64;
  const std::vector<int32_t> prompt = RandomTokens(13, V, 9);
  auto alone = m.runner->NewState(), probe = m.runner->NewState();
  std::vector<float> last(V), scratch(V);
  {
    StepItem a{alone.get(), prompt, StepItem::Logits::kLast, last.data()};
    ASSERT_TRUE(m.runner->Execute({&a, 1}).ok());
    StepItem p{probe.get(), prompt, StepItem::Logits::kLast, scratch.data()};
    ASSERT_TRUE(m.runner->Execute({&p, 1}).ok());
  }
  std::vector<std::unique_ptr<SequenceState>> others;
  std::mt19937 rng(1);
  for (int i = 0; i < 6; ++i) {
    others.push_back(m.runner->NewState());
    const std::vector<int32_t> p = RandomTokens(1 + static_cast<int>(rng() % 30), V, 100 + i);
    StepItem o{others.back().get(), p, StepItem::Logits::kNone, nullptr};
    ASSERT_TRUE(m.runner->Execute({&o, 1}).ok());
  }
  std::vector<float> batch_last(V);
  int32_t tok = Argmax(last.data(), V);
  for (int step = 0; step < 20; ++step) {
    int32_t tok_alone = tok, tok_batch = tok;
    StepItem a{alone.get(), {&tok_alone, 1}, StepItem::Logits::kLast, last.data()};
    ASSERT_TRUE(m.runner->Execute({&a, 1}).ok());
    std::vector<StepItem> items;
    std::vector<int32_t> other_tokens(6);
    std::vector<std::vector<float>> other_logits(6, std::vector<float>(V));
    for (int i = 0; i < 6; ++i) {
      other_tokens[i] = static_cast<int32_t>(rng() % V);
      items.push_back({others[i].get(), {&other_tokens[i], 1},
                       i % 2 ? StepItem::Logits::kLast : StepItem::Logits::kNone, other_logits[i].data()});
    }
    items.insert(items.begin() + step % 7,
                 StepItem{probe.get(), {&tok_batch, 1}, StepItem::Logits::kLast, batch_last.data()});
    ASSERT_TRUE(m.runner->Execute(items).ok());
    ASSERT_EQ(last, batch_last) << "step " << step;  // bit-identical
    tok = Argmax(last.data(), V);
  }
  EXPECT_EQ(probe->position(), alone->position());
}

// Greedy continuation of `state` for `n` tokens starting from `first`.
std::vector<float> Greedy(ModelRunner& runner, SequenceState* state, int32_t first, int n) {
  const int V = runner.info().vocab_size;
  std::vector<float> logits(V), all;
  int32_t tok = first;
  for (int i = 0; i < n; ++i) {
    StepItem item{state, {&tok, 1}, StepItem::Logits::kLast, logits.data()};
    EXPECT_TRUE(runner.Execute({&item, 1}).ok());
    all.insert(all.end(), logits.begin(), logits.end());
    tok = Argmax(logits.data(), V);
  }
  return all;
}

TEST(ReformerRunnerTest, SnapshotsAndClonesContinueBitExactly) {
  Model m = MakeModel(TinyConfig({kLsh, kLocal, kLsh}, 4, 4, {4, 4}));
  for (int decoded : {0, 9}) {  // before and after the bucket indexes exist
    auto state = m.runner->NewState();
    const std::vector<int32_t> prompt = RandomTokens(13, 64, 21);
    RunChunks(*m.runner, state.get(), prompt, {13});
    Greedy(*m.runner, state.get(), 3, decoded);
    absl::StatusOr<std::string> bytes = m.runner->SerializeState(*state);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    auto restored = m.runner->DeserializeState(*bytes);
    ASSERT_TRUE(restored.ok()) << restored.status();
    EXPECT_EQ((*restored)->position(), 13 + decoded);
    EXPECT_EQ(*m.runner->SerializeState(**restored), *bytes);
    auto clone = m.runner->CloneState(*state);
    const std::vector<float> a = Greedy(*m.runner, state.get(), 5, 25);
    const std::vector<float> b = Greedy(*m.runner, restored->get(), 5, 25);
    EXPECT_EQ(a, b);
    // The clone is independent: the original moved on, the clone still continues from the
    // snapshot point, and moving the clone does not touch the original.
    const std::string original_now = *m.runner->SerializeState(*state);
    EXPECT_EQ(clone->position(), 13 + decoded);
    const std::vector<float> c = Greedy(*m.runner, clone.get(), 5, 25);
    EXPECT_EQ(a, c);
    EXPECT_EQ(*m.runner->SerializeState(*state), original_now);
  }
  // A fresh state round-trips too (empty LSH caches).
  auto fresh = m.runner->NewState();
  auto restored = m.runner->DeserializeState(*m.runner->SerializeState(*fresh));
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ((*restored)->position(), 0);
}

TEST(ReformerRunnerTest, SnapshotErrors) {
  const ModelConfig config = TinyConfig({kLsh, kLocal}, 4, 4, {8});
  Model m = MakeModel(config);
  Model other = MakeModel(config, /*seed=*/8);  // same shapes, other weights
  auto state = m.runner->NewState();
  RunChunks(*m.runner, state.get(), RandomTokens(9, 64, 2), {9});
  const std::string bytes = *m.runner->SerializeState(*state);
  EXPECT_EQ(other.runner->DeserializeState(bytes).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(m.runner->DeserializeState("garbage").status().code(), absl::StatusCode::kInvalidArgument);
  for (size_t cut : {size_t{1}, size_t{4}, bytes.size() / 2, bytes.size() - 8}) {
    EXPECT_EQ(m.runner->DeserializeState(bytes.substr(0, bytes.size() - cut)).status().code(),
              absl::StatusCode::kInvalidArgument)
        << cut;
  }
  EXPECT_FALSE(other.runner->SerializeState(*state).ok());  // a state of another runner
  // Another architecture.
  Model local = MakeModel(TinyConfig({kLocal, kLocal}, 4, 4, {8}));
  EXPECT_FALSE(m.runner->DeserializeState(*local.runner->SerializeState(*local.runner->NewState())).ok());
  // Well-formed safetensors with bad contents: a bucket out of range, a wrong row count.
  auto file = SafetensorsFile::FromBuffer(bytes, "snapshot");
  ASSERT_TRUE(file.ok());
  auto rewrite = [&](const std::string& name, const std::function<void(Tensor*)>& edit) {
    std::vector<Tensor> storage;
    std::vector<std::pair<std::string, ConstTensorView>> tensors;
    for (const std::string& n : (*file)->names()) {
      const ConstTensorView view = *(*file)->Get(n);
      Tensor t(view.dtype, view.shape);
      std::memcpy(t.view().data, view.data, view.num_bytes());
      if (n == name) edit(&t);
      storage.push_back(std::move(t));
    }
    size_t i = 0;
    for (const std::string& n : (*file)->names()) tensors.emplace_back(n, storage[i++].view());
    return *SerializeSafetensors(tensors, (*file)->metadata());
  };
  const std::string bad_bucket = rewrite("layers.0.buckets", [](Tensor* t) { t->as<int32_t>()[3] = 8; });
  absl::Status s = m.runner->DeserializeState(bad_bucket).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("bucket"), std::string::npos) << s;
  const std::string negative = rewrite("layers.0.buckets", [](Tensor* t) { t->as<int32_t>()[0] = -1; });
  EXPECT_EQ(m.runner->DeserializeState(negative).status().code(), absl::StatusCode::kInvalidArgument);
  const std::string same = rewrite("", [](Tensor*) {});
  EXPECT_TRUE(m.runner->DeserializeState(same).ok());
  // A position that disagrees with the cached rows.
  std::string moved = bytes;
  const size_t at = moved.find("\"position\":\"9\"");
  ASSERT_NE(at, std::string::npos);
  moved[at + 12] = '8';
  EXPECT_EQ(m.runner->DeserializeState(moved).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ReformerRunnerTest, StateBytesGrowLinearly) {
  Model m = MakeModel(TinyConfig({kLsh, kLocal, kLsh}, 4, 4, {4, 4}));
  const engine::ModelInfo& info = m.runner->info();
  EXPECT_FALSE(info.constant_state);
  EXPECT_EQ(info.state_bytes, m.runner->NewState()->byte_size());
  const std::vector<int32_t> tokens = RandomTokens(80, 64, 8);
  auto state = m.runner->NewState();
  std::map<int, size_t> bytes;
  RunChunks(*m.runner, state.get(), std::vector<int32_t>(tokens.begin(), tokens.begin() + 20), {20});
  for (int t = 20; t < 80; ++t) {
    RunChunks(*m.runner, state.get(), {tokens[t]}, {1});
    bytes[t + 1] = state->byte_size();
  }
  const size_t per_20 = bytes[60] - bytes[40];
  EXPECT_GT(per_20, 0u);
  EXPECT_EQ(bytes[80] - bytes[60], per_20);
  // Per token: two LSH layers of 2 * A floats plus H * nh buckets, plus the H * nh index entries.
  const size_t per_token = 2 * (2 * 16 * sizeof(float) + 2 * 2 * sizeof(int32_t) + 2 * 2 * sizeof(int32_t));
  EXPECT_EQ(per_20, 20 * per_token);
  EXPECT_GT(bytes[80], info.state_bytes);
}

TEST(ReformerRunnerTest, BadStepItemsAreRejectedWithoutTouchingAnyState) {
  Model m = MakeModel(TinyConfig({kLsh, kLocal}, 4, 4, {8}));
  auto a = m.runner->NewState(), b = m.runner->NewState();
  RunChunks(*m.runner, a.get(), RandomTokens(6, 64, 1), {6});
  const std::string before = *m.runner->SerializeState(*a);
  std::vector<int32_t> good = {1, 2, 3}, bad = {4, 64}, negative = {-1};
  std::vector<StepItem> items = {{a.get(), good, StepItem::Logits::kNone, nullptr},
                                 {b.get(), bad, StepItem::Logits::kNone, nullptr}};
  absl::Status s = m.runner->Execute(items);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("step item 1"), std::string::npos) << s;
  EXPECT_NE(s.message().find("outside the vocabulary"), std::string::npos) << s;
  items = {{a.get(), negative, StepItem::Logits::kNone, nullptr}};
  EXPECT_EQ(m.runner->Execute(items).code(), absl::StatusCode::kInvalidArgument);
  items = {{a.get(), good, StepItem::Logits::kNone, nullptr}, {a.get(), good, StepItem::Logits::kNone, nullptr}};
  EXPECT_EQ(m.runner->Execute(items).code(), absl::StatusCode::kInvalidArgument);
  items = {{a.get(), {}, StepItem::Logits::kNone, nullptr}};
  EXPECT_EQ(m.runner->Execute(items).code(), absl::StatusCode::kInvalidArgument);
  items = {{a.get(), good, StepItem::Logits::kLast, nullptr}};
  EXPECT_EQ(m.runner->Execute(items).code(), absl::StatusCode::kInvalidArgument);
  Model other = MakeModel(TinyConfig({kLsh, kLocal}, 4, 4, {8}));
  auto foreign = other.runner->NewState();
  items = {{foreign.get(), good, StepItem::Logits::kNone, nullptr}};
  EXPECT_EQ(m.runner->Execute(items).code(), absl::StatusCode::kInvalidArgument);
  // Past max_position_embeddings (256): a prefill, and tokens appended to a state at 6.
  const std::vector<int32_t> too_long = RandomTokens(257, 64, 2);
  items = {{b.get(), too_long, StepItem::Logits::kNone, nullptr}};
  EXPECT_EQ(m.runner->Execute(items).code(), absl::StatusCode::kOutOfRange);
  const std::vector<int32_t> rest = RandomTokens(251, 64, 3);
  items = {{b.get(), good, StepItem::Logits::kNone, nullptr}, {a.get(), rest, StepItem::Logits::kNone, nullptr}};
  s = m.runner->Execute(items);
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(s.message().find("step item 1"), std::string::npos) << s;
  EXPECT_EQ(*m.runner->SerializeState(*a), before);
  EXPECT_EQ(a->position(), 6);
  EXPECT_EQ(b->position(), 0);
  // Exactly max_position tokens are fine.
  const std::vector<int32_t> fits = RandomTokens(250, 64, 4);
  items = {{a.get(), fits, StepItem::Logits::kNone, nullptr}};
  EXPECT_TRUE(m.runner->Execute(items).ok());
  EXPECT_EQ(a->position(), 256);
}

TEST(ReformerRunnerTest, Bf16WeightsStayCloseToF32) {
  const ModelConfig c = TinyConfig({kLocal, kLocal}, 4, 4);  // no hashes to flip
  const std::string dir = testing::MakeTempDir("reformer_bf16");
  ASSERT_TRUE(WriteSyntheticModelDir(c, dir, 7, DType::kF32, 0.3f).ok());
  RunnerOptions f32_options, bf16_options;
  bf16_options.weight_dtype = WeightDType::kBF16;
  auto f32 = LoadModelRunner(dir, f32_options);
  auto bf16 = LoadModelRunner(dir, bf16_options);
  ASSERT_TRUE(f32.ok() && bf16.ok());
  EXPECT_EQ((*bf16)->info().weight_dtype, "bf16");
  const std::vector<int32_t> tokens = RandomTokens(20, 64, 4);
  auto s1 = (*f32)->NewState(), s2 = (*bf16)->NewState();
  const std::vector<float> l1 = RunChunks(**f32, s1.get(), tokens, {12, 1});
  const std::vector<float> l2 = RunChunks(**bf16, s2.get(), tokens, {12, 1});
  float scale = 0;
  for (float x : l1) scale = std::max(scale, std::fabs(x));
  const float diff = MaxAbsDiff(l1, l2);
  EXPECT_LE(diff, 0.02f * scale);  // bf16 keeps 8 bits of mantissa
  EXPECT_GT(diff, 0.0f);  // it really ran in bf16
}

TEST(ReformerRunnerTest, InfoDescribesTheModel) {
  Model m = MakeModel(TinyConfig({kLsh, kLocal}, 8, 4, {8}));
  const engine::ModelInfo& info = m.runner->info();
  EXPECT_EQ(info.family, "reformer");
  EXPECT_EQ(info.vocab_size, 64);
  EXPECT_EQ(info.block_size, 8);
  EXPECT_EQ(info.max_position, 256);
  EXPECT_FALSE(info.constant_state);
  EXPECT_EQ(info.device, "cpu");
  EXPECT_EQ(info.weight_dtype, "f32");
  EXPECT_EQ(info.d_model, 32);
  EXPECT_EQ(info.num_layers, 2);
  EXPECT_GT(info.state_bytes, 0u);
  EXPECT_GT(info.num_parameters, 0);
  Model local = MakeModel(TinyConfig({kLocal}, 8, 4, {8}));
  EXPECT_EQ(local.runner->info().block_size, 4);
}

}  // namespace
}  // namespace blockserve
