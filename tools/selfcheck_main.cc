// blockserve-selfcheck: verifies this build end to end on this machine (SIMD kernels,
// safetensors, config, tokenizer, CUDA availability) and prints what it found.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status.h"
#include "base/tokenizer.h"
#include "kernels/cpu/rms_norm.h"
#include "kernels/cpu/simd_targets.h"
#include "kernels/reference/ops_ref.h"
#include "models/checkpoint_layout.h"
#include "models/model_dir.h"
#include "models/synthetic_checkpoint.h"
#ifdef BLOCKSERVE_HAVE_CUDA
#include "kernels/cuda/cuda_device.h"
#endif

namespace blockserve {
namespace {

int g_failures = 0;

void Report(const char* what, const absl::Status& status, const std::string& detail = "") {
  if (status.ok()) {
    std::printf("  ok    %-28s %s\n", what, detail.c_str());
  } else {
    ++g_failures;
    std::printf("  FAIL  %-28s %s\n", what, std::string(status.message()).c_str());
  }
  std::fflush(stdout);
}

absl::Status CheckRmsNorm(std::string* detail) {
  std::vector<std::string> names;
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (const cpu::SimdTarget& target : cpu::UsableSimdTargets()) {
    cpu::ForceSimdTargetForTest(target.bits);
    const size_t n = 1000;
    std::vector<float> x(n), scale(n), out(n), want(n);
    for (size_t i = 0; i < n; ++i) {
      x[i] = dist(rng);
      scale[i] = dist(rng);
    }
    cpu::RmsNorm(x.data(), scale.data(), 1, n, 1e-6f, out.data());
    ref::RmsNorm(x.data(), scale.data(), n, 1e-6f, want.data());
    for (size_t i = 0; i < n; ++i) {
      if (std::fabs(out[i] - want[i]) > 1e-4f * (1 + std::fabs(want[i]))) {
        return absl::InternalError(absl::StrCat("RMSNorm on ", target.name, " differs at ", i));
      }
    }
    names.push_back(target.name);
  }
  cpu::ForceSimdTargetForTest(0);
  *detail = absl::StrCat("targets ", absl::StrJoin(names, ", "), " (dispatch picks ",
                         cpu::BestSimdTargetName(), ")");
  return absl::OkStatus();
}

absl::Status CheckTokenizer(const std::string& dir, std::string* model_path, std::string* detail) {
  const std::string corpus = dir + "/genesis.txt";
  const std::string cmd = absl::StrCat("bible -f Gen1:1-Gen50:26 > ", corpus, " 2>/dev/null");
  if (std::system(cmd.c_str()) != 0) {
    return absl::FailedPreconditionError("`bible` failed: install bible-kjv (scripts/install-deps.sh)");
  }
  TokenizerTrainOptions options;
  options.input_files = {corpus};
  options.model_prefix = dir + "/tok";
  options.vocab_size = 400;
  RETURN_IF_ERROR(TrainTokenizer(options));
  *model_path = dir + "/tok.model";
  ASSIGN_OR_RETURN(auto tok, Tokenizer::Load(*model_path));
  const std::string text = "In the beginning God created the heaven and the earth. \xE2\x9C\x93";
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, tok->Encode(text));
  ASSIGN_OR_RETURN(std::string back, tok->Decode(ids));
  if (back != text) return absl::InternalError(absl::StrCat("round trip gave '", back, "'"));
  *detail = absl::StrCat("trained on Genesis, vocab ", tok->vocab_size(), ", ", text.size(), " bytes -> ",
                         ids.size(), " tokens -> same bytes");
  return absl::OkStatus();
}

absl::Status CheckModelDir(const std::string& dir, const std::string& tokenizer, std::string* detail) {
  ModelConfig c;
  c.vocab_size = 400;
  c.d_model = 64;
  c.num_layers = 3;
  c.num_heads = 4;
  c.head_dim = 16;
  c.ffn_dim = 128;
  c.brt.window = 16;
  c.brt.segment_length = 64;
  c.brt.recurrent_layers = {1};
  c.brt.num_states = 8;
  RETURN_IF_ERROR(WriteSyntheticModelDir(c, dir, 7, DType::kBF16, 0.05f, tokenizer));
  ASSIGN_OR_RETURN(ModelDir opened, OpenModelDir(dir));
  *detail = absl::StrCat("BRT dir with ", opened.weights->names().size(), " tensors, ",
                         CountParameters(opened.config), " parameters, ", opened.weights->size_bytes(),
                         " bytes mapped");
  return absl::OkStatus();
}

int Main() {
  std::printf("blockserve self-check\n");
  std::string detail;
  Report("cpu kernels (Highway)", CheckRmsNorm(&detail), detail);

  std::error_code ec;
  const std::string dir = (std::filesystem::temp_directory_path(ec) / "blockserve_selfcheck").string();
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir + "/model", ec);
  std::string tokenizer;
  detail.clear();
  Report("tokenizer (sentencepiece)", CheckTokenizer(dir, &tokenizer, &detail), detail);
  if (!tokenizer.empty()) {
    detail.clear();
    Report("model dir + safetensors", CheckModelDir(dir + "/model", tokenizer, &detail), detail);
  }
#ifdef BLOCKSERVE_HAVE_CUDA
  const cuda::CudaAvailability cuda = cuda::QueryCudaDevices();
  std::string gpu = cuda.device_count > 0 ? absl::StrCat(cuda.device_count, " device(s)") : cuda.reason;
  if (cuda.device_count > 0) {
    std::string d;
    if (cuda::DescribeDevice(0, &d).ok()) gpu = absl::StrCat(gpu, ": ", d);
  }
  std::printf("  info  %-28s compiled; %s\n", "cuda backend", gpu.c_str());
#else
  std::printf("  info  %-28s not compiled (no nvcc at build time)\n", "cuda backend");
#endif
  std::filesystem::remove_all(dir, ec);
  std::printf("%s\n", g_failures == 0 ? "self-check passed" : "self-check FAILED");
  return g_failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace blockserve

int main() { return blockserve::Main(); }
