// End-to-end runs of the blockserve-train binary: a tiny BRT learns KJV, its exported directory
// reproduces the reported evaluation, and 2-process DDP equals 1 process with the doubled batch (BRT
// and Reformer).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "base/safetensors.h"
#include "base/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "testing/test_util.h"
#include "trainer/checkpoint_io.h"
#include "trainer/corpus.h"
#include "trainer/token_data.h"
#include "trainer/train_loop.h"

namespace blockserve::trainer {
namespace {

std::string TrainBinary() {
  const char* dir = std::getenv("BLOCKSERVE_BINARY_DIR");
  return absl::StrCat(dir != nullptr ? dir : ".", "/bin/blockserve-train");
}

// Runs a command, returning its exit code and its output in *out.
int RunCommand(const std::string& cmd, std::string* out) {
  FILE* pipe = popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out->append(buf, n);
  return pclose(pipe);
}

std::vector<nlohmann::json> Metrics(const std::string& dir) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

TEST(TrainCliTest, TinyBrtLearnsKjvAndItsExportReproducesTheEvaluation) {
  const std::string out = testing::MakeTempDir("blockserve_cli");
  const std::string cmd = absl::StrCat(
      TrainBinary(), " --out=", out,
      " --corpus=kjv --max_corpus_bytes=1500000 --vocab=1000 --model=brt --d_model=64 --layers=3"
      " --heads=4 --head_dim=16 --ffn=256 --window=32 --segment=128 --states=16 --recurrent_layers=1"
      " --batch=8 --steps=250 --warmup=20 --lr=3e-3 --threads=2 --log_every=50 --eval_every=125 --seed=3");
  std::string log;
  ASSERT_EQ(RunCommand(cmd, &log), 0) << log;
  std::printf("%s", log.c_str());
  EXPECT_NE(log.find("tokens/s"), std::string::npos);
  EXPECT_NE(log.find("openblas"), std::string::npos) << "libtorch must run on OpenBLAS, not reference BLAS";

  std::vector<double> bits;
  double final_eval = -1;
  for (const auto& row : Metrics(out)) {
    if (row.contains("bits_per_token")) bits.push_back(row["bits_per_token"].get<double>());
    if (row.contains("final")) final_eval = row["eval_bits_per_token"].get<double>();
  }
  ASSERT_EQ(bits.size(), 250u);
  double first = 0, last = 0;
  for (int i = 0; i < 25; ++i) {
    first += bits[i] / 25;
    last += bits[bits.size() - 1 - i] / 25;
  }
  std::printf("train bits/token: first 25 steps %.3f, last 25 steps %.3f; held-out %.3f\n", first, last, final_eval);
  EXPECT_LT(last, first - 1.5) << "the loss must fall";
  EXPECT_LT(final_eval, std::log2(1000.0) - 1.0) << "held-out must beat a uniform guess by a margin";

  // The exported directory, loaded fresh, gives the held-out figure the trainer reported.
  auto model = LoadBrtLm(out);
  ASSERT_TRUE(model.ok()) << model.status();
  auto docs = LoadCorpus("kjv", 1500000);
  ASSERT_TRUE(docs.ok());
  const CorpusSplit split = SplitCorpus(*docs, 0.1, 3);
  auto tok = Tokenizer::Load(out + "/tokenizer.model");
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto heldout = EncodeDocuments(**tok, split.heldout, nullptr);
  ASSERT_TRUE(heldout.ok());
  const int batch = static_cast<int>(std::min<size_t>(8, heldout->size()));
  const EvalResult again = EvaluateBitsPerToken(*model, *heldout, 128, batch);
  EXPECT_NEAR(again.bits_per_token, final_eval, 1e-4);

  std::ifstream png(out + "/curves.png", std::ios::binary);
  char magic[4] = {};
  png.read(magic, 4);
  EXPECT_EQ(std::string(magic + 1, 3), "PNG") << "curves.png missing (gnuplot-nox installed?)";
}

// Both families: the BRT (carried state) and the Reformer (independent segments, LSH).
TEST(TrainCliTest, TwoProcessDdpEqualsOneProcessWithTheDoubledBatch) {
  const std::string common =
      " --corpus=kjv --max_corpus_bytes=400000 --vocab=400 --d_model=32 --layers=2 --heads=2 --head_dim=16"
      " --ffn=64 --segment=32 --batch=4 --steps=12 --warmup=2 --dropout=0 --threads=1 --plot=false --log_every=12";
  for (const std::string& family_args :
       {std::string(" --window=16 --states=8 --recurrent_layers=1"),
        std::string(" --model=reformer --attn_layers=local,lsh --lsh_chunk=8 --local_chunk=8 --max_positions=64")}) {
    SCOPED_TRACE(family_args);
    const std::string args = common + family_args;
    const std::string one = testing::MakeTempDir("blockserve_ddp1"), two = testing::MakeTempDir("blockserve_ddp2");
    std::string log1, log2;
    ASSERT_EQ(RunCommand(absl::StrCat(TrainBinary(), " --out=", one, args), &log1), 0) << log1;
    ASSERT_EQ(RunCommand(absl::StrCat(TrainBinary(), " --out=", two, " --nproc=2", args), &log2), 0) << log2;
    EXPECT_NE(log2.find("2 process(es)"), std::string::npos) << log2;
    auto a = SafetensorsFile::Open(one + "/model.safetensors");
    auto b = SafetensorsFile::Open(two + "/model.safetensors");
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_EQ((*a)->names(), (*b)->names());
    double max_diff = 0, max_change = 0;
    for (const std::string& name : (*a)->names()) {
      auto va = (*a)->Get(name)->as<float>();
      auto vb = (*b)->Get(name)->as<float>();
      for (size_t i = 0; i < va.size(); ++i) max_diff = std::max<double>(max_diff, std::fabs(va[i] - vb[i]));
    }
    // Sanity: training moved the weights far more than the difference.
    auto init_dir = testing::MakeTempDir("blockserve_ddp0");
    std::string log0;
    ASSERT_EQ(RunCommand(absl::StrCat(TrainBinary(), " --out=", init_dir, args, " --steps=1 --lr=1e-12"), &log0), 0)
        << log0;
    auto c = SafetensorsFile::Open(init_dir + "/model.safetensors");
    ASSERT_TRUE(c.ok());
    for (const std::string& name : (*a)->names()) {
      auto va = (*a)->Get(name)->as<float>();
      auto vc = (*c)->Get(name)->as<float>();
      for (size_t i = 0; i < va.size(); ++i) max_change = std::max<double>(max_change, std::fabs(va[i] - vc[i]));
    }
    std::printf("%s\nDDP vs single process: max |diff| %.3g; max change from init %.3g\n", family_args.c_str(),
                max_diff, max_change);
    EXPECT_LT(max_diff, 1e-5);
    EXPECT_GT(max_change, 1e-3);
  }
}

}  // namespace
}  // namespace blockserve::trainer
