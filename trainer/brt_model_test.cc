// Unit tests of the libtorch BRT: masks, T5 buckets, softmax, gates, variants, state carrying,
// causality, gradients, parameter names.
#include "trainer/brt_model.h"

#include <cmath>
#include <set>

#include "gtest/gtest.h"
#include "models/checkpoint_layout.h"

namespace blockserve::trainer {
namespace {

ModelConfig Tiny(BrtModel model = BrtModel::kBrt, BrtGate gate = BrtGate::kFixed,
                 BrtRecurrentVariant variant = BrtRecurrentVariant::kSkip) {
  ModelConfig c;
  c.vocab_size = 50;
  c.d_model = 16;
  c.num_layers = 3;
  c.num_heads = 2;
  c.head_dim = 8;
  c.ffn_dim = 32;
  c.brt.model = model;
  c.brt.window = 4;
  c.brt.segment_length = 8;
  c.brt.num_states = 3;
  c.brt.gate = gate;
  c.brt.recurrent_variant = variant;
  c.brt.dropout = 0.0f;
  c.brt.t5_num_buckets = 8;
  c.brt.t5_max_distance = 16;
  if (model == BrtModel::kBrt) c.brt.recurrent_layers = {1};
  return c;
}

TEST(BrtMathTest, WindowMaskCoversExactlyThePreviousWTokens) {
  for (int w : {1, 2, 4, 7}) {
    const torch::Tensor mask = WindowMask(w);
    ASSERT_EQ(mask.sizes(), (std::vector<int64_t>{w, 2 * w}));
    for (int i = 0; i < w; ++i) {
      for (int j = 0; j < 2 * w; ++j) {
        const int query_pos = w + i;  // position of query i inside [prev block; block]
        const bool want = j < query_pos && j >= query_pos - w;
        EXPECT_EQ(mask[i][j].item<bool>(), want) << "w=" << w << " i=" << i << " j=" << j;
      }
      EXPECT_EQ(mask[i].sum().item<int64_t>(), w);
      EXPECT_FALSE(mask[i][w + i].item<bool>()) << "a token must not attend to itself";
    }
  }
}

TEST(BrtMathTest, T5BucketsMatchHandComputedValues) {
  // meliad defaults: 32 buckets, max distance 128: exact below 16, then logarithmic.
  const std::vector<int64_t> n = {0, 1, 15, 16, 17, 20, 32, 64, 100, 127, 128, 129, 1000, 100000};
  const torch::Tensor b = T5Bucket(torch::tensor(n), 32, 128);
  std::vector<int64_t> want;
  for (int64_t d : n) {
    if (d < 16) {
      want.push_back(d);
    } else {
      const int64_t v = 16 + static_cast<int64_t>(std::log(d / 16.0) / std::log(8.0) * 16);
      want.push_back(std::min<int64_t>(v, 31));
    }
  }
  for (size_t i = 0; i < n.size(); ++i) EXPECT_EQ(b[i].item<int64_t>(), want[i]) << "n=" << n[i];
  EXPECT_EQ(b[6].item<int64_t>(), 21);  // 16 + int(16 * log(2)/log(8)) = 16 + int(5.33)
  EXPECT_EQ(b[10].item<int64_t>(), 31);
}

TEST(BrtMathTest, SafeSoftmaxLetsAFullyMaskedRowAttendToNothing) {
  const torch::Tensor x = torch::tensor({{1.0, 2.0, 3.0}, {-1e6, -1e6, -1e6}}, torch::kFloat64);
  const torch::Tensor s = SafeSoftmax(x);
  const torch::Tensor ref = torch::softmax(x[0], 0);
  EXPECT_TRUE(torch::allclose(s[0], ref, 1e-12, 1e-12));
  EXPECT_LT(s[1].sum().item<double>(), 1e-100);
  // exp(min_x - m) in the denominator: a row at exactly -1000 gets weights 1/(n+1).
  const torch::Tensor low = SafeSoftmax(torch::full({1, 3}, -1000.0, torch::kFloat64));
  EXPECT_NEAR(low[0][0].item<double>(), 0.25, 1e-12);
}

TEST(BrtMathTest, AttendMatchesExplicitFormula) {
  torch::manual_seed(0);
  const auto f64 = torch::kFloat64;
  const torch::Tensor q = torch::randn({1, 3, 2, 4}, f64), k = torch::randn({1, 5, 2, 4}, f64),
                      v = torch::randn({1, 5, 2, 4}, f64), scale = torch::tensor({0.5, 2.0}, f64),
                      bias = torch::randn({2, 3, 5}, f64);
  const torch::Tensor mask = torch::rand({3, 5}) > 0.3;
  const torch::Tensor y = Attend(q, k, v, scale, bias, mask);
  for (int h = 0; h < 2; ++h) {
    for (int i = 0; i < 3; ++i) {
      std::vector<double> logits(5);
      double m = -1000;
      for (int j = 0; j < 5; ++j) {
        logits[j] = mask[i][j].item<bool>()
                        ? ((q[0][i][h] * k[0][j][h]).sum().item<double>() + bias[h][i][j].item<double>()) *
                              scale[h].item<double>()
                        : -1e6;
        m = std::max(m, logits[j]);
      }
      double denom = std::exp(-1000 - m);
      for (double l : logits) denom += std::exp(l - m);
      for (int d = 0; d < 4; ++d) {
        double want = 0;
        for (int j = 0; j < 5; ++j) want += std::exp(logits[j] - m) / denom * v[0][j][h][d].item<double>();
        EXPECT_NEAR(y[0][i][h][d].item<double>(), want, 1e-12);
      }
    }
  }
}

TEST(BrtGateTest, FixedAndLstmGatesFollowTheSpec) {
  torch::manual_seed(1);
  const torch::Tensor state = torch::randn({2, 3, 4}), y = torch::randn({2, 3, 4}), hid = torch::randn({2, 3, 6});
  Gate fixed(BrtGate::kFixed, 4, 6);
  const torch::Tensor g = torch::sigmoid(fixed->bias);
  EXPECT_TRUE(torch::allclose(fixed(state, y, hid), state * g + y * (1 - g)));
  Gate lstm(BrtGate::kLstm, 4, 6);
  const torch::Tensor f = torch::sigmoid(torch::matmul(hid, lstm->forget->weight.t()) + lstm->forget->bias + 1);
  const torch::Tensor i = torch::sigmoid(torch::matmul(hid, lstm->input->weight.t()) + lstm->input->bias - 1);
  EXPECT_TRUE(torch::allclose(lstm(state, y, hid), state * f + y * i, 1e-6, 1e-6));
  // At init the lstm gate is biased towards remembering: f ~ sigmoid(1), i ~ sigmoid(-1).
  EXPECT_NEAR(f.mean().item<double>(), 1 / (1 + std::exp(-1.0)), 0.1);
}

TEST(BrtGateTest, RecurrentVariantsFollowTheSpec) {
  torch::manual_seed(2);
  for (BrtGate gate : {BrtGate::kFixed, BrtGate::kLstm}) {
    for (BrtRecurrentVariant variant :
         {BrtRecurrentVariant::kSkip, BrtRecurrentVariant::kDual, BrtRecurrentVariant::kSingle}) {
      const ModelConfig c = Tiny(BrtModel::kBrt, gate, variant);
      RecurrentState rec(c);
      const torch::Tensor state = torch::randn({2, 3, 16}), a = torch::randn({2, 3, 32});
      const torch::Tensor got = rec->Update(state, a);
      torch::Tensor want;
      if (variant == BrtRecurrentVariant::kSkip) {
        want = rec->gate(state, torch::matmul(a, rec->out->weight.t()), a);
      } else if (variant == BrtRecurrentVariant::kDual) {
        const torch::Tensor c1 = rec->gate(state, torch::matmul(a, rec->out->weight.t()), a);
        const torch::Tensor n = c1 * torch::rsqrt(c1.square().mean(-1, true) + 1e-6) * rec->ffn_norm->scale;
        const torch::Tensor h = torch::relu(torch::matmul(n, rec->ffn->w1->weight.t()));
        want = rec->ffn_gate(c1, torch::matmul(h, rec->ffn->w2->weight.t()), h);
      } else {
        const torch::Tensor h = torch::relu(torch::matmul(a, rec->ffn->w1->weight.t()));
        want = rec->ffn_gate(state, torch::tanh(torch::matmul(h, rec->ffn->w2->weight.t())), h);
      }
      EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-6));
    }
  }
}

TEST(BrtModelTest, ParameterNamesAndShapesAreTheCheckpointLayout) {
  for (BrtModel model : {BrtModel::kSlide, BrtModel::kBrt}) {
    for (BrtGate gate : {BrtGate::kFixed, BrtGate::kLstm}) {
      for (BrtRecurrentVariant variant :
           {BrtRecurrentVariant::kSkip, BrtRecurrentVariant::kDual, BrtRecurrentVariant::kSingle}) {
        const ModelConfig c = Tiny(model, gate, variant);
        BrtLm m(c);
        std::map<std::string, std::vector<int64_t>> have;
        for (const auto& p : m->named_parameters()) have[p.key()] = p.value().sizes().vec();
        std::map<std::string, std::vector<int64_t>> want;
        for (const TensorSpec& s : CheckpointLayout(c)) want[s.name] = s.shape;
        EXPECT_EQ(have, want);
      }
    }
  }
}

// Runs `tokens` (1, L) through the model in segments of `seg` tokens with the cache carried.
torch::Tensor RunSegments(BrtLm& m, const torch::Tensor& tokens, int64_t seg) {
  BrtCache cache;
  std::vector<torch::Tensor> out;
  for (int64_t s = 0; s < tokens.size(1); s += seg) {
    const torch::Tensor start = torch::tensor({s == 0});
    out.push_back(m->forward(tokens.slice(1, s, s + seg), start, &cache));
  }
  return torch::cat(out, 1);
}

TEST(BrtModelTest, CarriedStateEqualsOneLongForward) {
  for (BrtRecurrentVariant variant :
       {BrtRecurrentVariant::kSkip, BrtRecurrentVariant::kDual, BrtRecurrentVariant::kSingle}) {
    torch::manual_seed(3);
    BrtLm m(Tiny(BrtModel::kBrt, BrtGate::kLstm, variant));
    m->to(torch::kFloat64);
    m->eval();
    const torch::Tensor tokens = torch::randint(1, 50, {1, 32});
    const torch::Tensor whole = RunSegments(m, tokens, 32);
    EXPECT_TRUE(torch::allclose(RunSegments(m, tokens, 4), whole, 1e-10, 1e-10));
    EXPECT_TRUE(torch::allclose(RunSegments(m, tokens, 8), whole, 1e-10, 1e-10));
    EXPECT_TRUE(torch::allclose(RunSegments(m, tokens, 16), whole, 1e-10, 1e-10));
  }
}

TEST(BrtModelTest, NoInformationFlowsFromTheFuture) {
  torch::manual_seed(4);
  BrtLm m(Tiny());
  m->to(torch::kFloat64);
  m->eval();
  const torch::Tensor tokens = torch::randint(1, 50, {1, 24});
  const torch::Tensor base = RunSegments(m, tokens, 8);
  for (int64_t p : {0, 3, 4, 11, 12, 20}) {
    torch::Tensor changed = tokens.clone();
    changed[0][p + 1] = (changed[0][p + 1].item<int64_t>() % 49) + 1;
    const torch::Tensor out = RunSegments(m, changed, 8);
    EXPECT_TRUE(torch::allclose(out.slice(1, 0, p + 1), base.slice(1, 0, p + 1), 0, 0)) << "p=" << p;
    EXPECT_FALSE(torch::allclose(out.slice(1, p + 1, p + 2), base.slice(1, p + 1, p + 2))) << "p=" << p;
  }
}

TEST(BrtModelTest, StateCarriesInformationAcrossBlocksBeyondTheWindow) {
  // With the recurrent layer, a token 3 blocks back (outside the 2W key window) still changes
  // the logits; without it (slide), it cannot.
  for (BrtModel kind : {BrtModel::kBrt, BrtModel::kSlide}) {
    torch::manual_seed(5);
    ModelConfig c = Tiny(kind);
    c.num_layers = 1;
    if (kind == BrtModel::kBrt) c.brt.recurrent_layers = {0};
    BrtLm m(c);
    m->to(torch::kFloat64);
    m->eval();
    const torch::Tensor tokens = torch::randint(1, 50, {1, 16});
    torch::Tensor changed = tokens.clone();
    changed[0][0] = (changed[0][0].item<int64_t>() % 49) + 1;
    const torch::Tensor a = RunSegments(m, tokens, 16), b = RunSegments(m, changed, 16);
    const bool last_block_changed = !torch::allclose(a.slice(1, 12, 16), b.slice(1, 12, 16), 0, 0);
    EXPECT_EQ(last_block_changed, kind == BrtModel::kBrt);
  }
}

TEST(BrtModelTest, CacheIsDetachedAndResetAtDocumentStart) {
  torch::manual_seed(6);
  BrtLm m(Tiny());
  BrtCache cache;
  const torch::Tensor tokens = torch::randint(1, 50, {2, 8});
  m->forward(tokens, torch::tensor({true, true}), &cache);
  for (const auto& t : cache.prev_k) EXPECT_FALSE(t.requires_grad());
  EXPECT_FALSE(cache.state[1].requires_grad());
  // Row 1 starts a new document: its logits equal a fresh run; row 0 continues.
  m->eval();
  BrtCache fresh;
  const torch::Tensor next = torch::randint(1, 50, {2, 8});
  const torch::Tensor carried = m->forward(next, torch::tensor({false, true}), &cache);
  const torch::Tensor alone = m->forward(next, torch::tensor({true, true}), &fresh);
  EXPECT_TRUE(torch::allclose(carried[1], alone[1], 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(carried[0], alone[0], 1e-5, 1e-6));
}

TEST(BrtModelTest, GradientsMatchFiniteDifferences) {
  torch::manual_seed(7);
  BrtLm m(Tiny(BrtModel::kBrt, BrtGate::kLstm, BrtRecurrentVariant::kDual));
  m->to(torch::kFloat64);
  const torch::Tensor tokens = torch::randint(1, 50, {2, 16});
  const torch::Tensor targets = torch::randint(1, 50, {2, 16});
  auto loss_fn = [&]() {
    BrtCache cache;
    const torch::Tensor logits = m->forward(tokens, torch::tensor({true, true}), &cache);
    return torch::nn::functional::cross_entropy(logits.reshape({-1, 50}), targets.reshape({-1}));
  };
  m->zero_grad();
  loss_fn().backward();
  const std::vector<std::string> names = {"embed.weight", "layers.1.rec.initial_state", "layers.1.rec.state_ids",
                                          "layers.1.rec.gate.forget.weight", "layers.1.rec.ffn_gate.input.bias",
                                          "layers.1.attn.rel_bias", "layers.1.attn.scale2", "layers.0.attn.q.weight",
                                          "layers.2.ffn.w2.weight", "final_norm.scale"};
  auto params = m->named_parameters();
  for (const std::string& name : names) {
    torch::Tensor p = params[name];
    const torch::Tensor grad = p.grad().clone();
    const int64_t n = p.numel();
    for (int64_t idx : {int64_t{0}, n / 2, n - 1}) {
      torch::NoGradGuard no_grad;
      auto flat = p.view({-1});
      const double orig = flat[idx].item<double>();
      const double eps = 1e-6;
      flat[idx] = orig + eps;
      const double up = loss_fn().item<double>();
      flat[idx] = orig - eps;
      const double down = loss_fn().item<double>();
      flat[idx] = orig;
      const double numeric = (up - down) / (2 * eps);
      const double analytic = grad.view({-1})[idx].item<double>();
      EXPECT_NEAR(analytic, numeric, 1e-6 + 1e-4 * std::fabs(numeric)) << name << "[" << idx << "]";
    }
  }
}

}  // namespace
}  // namespace blockserve::trainer
