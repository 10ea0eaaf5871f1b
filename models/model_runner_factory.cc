// LoadModelRunner: model directory -> family-specific runner.
#include "models/model_runner_factory.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "models/model_dir.h"

#ifdef BLOCKSERVE_HAVE_CUDA
#include "kernels/cuda/cuda_device.h"
#endif

namespace blockserve {
namespace {

// OK for "cpu". For "cuda": FailedPrecondition saying why no GPU can be used (no CUDA in this
// build, no device or driver), else Unimplemented: the CUDA execution backend is not finished
// (docs/gpu.md). Anything else: InvalidArgument.
absl::Status CheckDevice(const std::string& device) {
  if (device == "cpu") return absl::OkStatus();
  if (device != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat("device '", device, "': must be cpu or cuda"));
  }
#ifdef BLOCKSERVE_HAVE_CUDA
  const cuda::CudaAvailability cuda = cuda::QueryCudaDevices();
  if (cuda.device_count == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("device cuda: no usable CUDA device (", cuda.reason, "); use --device=cpu"));
  }
  return absl::UnimplementedError(absl::StrCat(
      "device cuda: ", cuda.device_count, " device(s) found, but the CUDA execution backend is not finished yet "
      "(its kernels exist and are tested; see docs/gpu.md); use --device=cpu"));
#else
  return absl::FailedPreconditionError(
      "device cuda: this build has no CUDA support (nvcc was not found when it was configured); use --device=cpu");
#endif
}

}  // namespace

absl::StatusOr<std::unique_ptr<engine::ModelRunner>> LoadModelRunner(const std::string& dir,
                                                                     const RunnerOptions& options) {
  RETURN_IF_ERROR(CheckDevice(options.device));
  absl::StatusOr<ModelDir> model = OpenModelDir(dir, /*load_tokenizer=*/false);
  if (!model.ok()) return Annotate(model.status(), absl::StrCat("model directory '", dir, "'"));
  std::string name = std::filesystem::path(dir).lexically_normal().filename().string();
  if (name.empty()) name = std::filesystem::path(dir).lexically_normal().parent_path().filename().string();
  switch (model->config.family) {
    case ModelFamily::kBrt: {
      std::shared_ptr<const SafetensorsFile> weights(std::move(model->weights));
      ASSIGN_OR_RETURN(std::unique_ptr<BrtRunner> runner, BrtRunner::Create(model->config, weights, name, options));
      return std::unique_ptr<engine::ModelRunner>(std::move(runner));
    }
    case ModelFamily::kReformer: {
      std::shared_ptr<const SafetensorsFile> weights(std::move(model->weights));
      ASSIGN_OR_RETURN(std::unique_ptr<ReformerRunner> runner,
                       ReformerRunner::Create(model->config, weights, name, options));
      return std::unique_ptr<engine::ModelRunner>(std::move(runner));
    }
  }
  return absl::InternalError("unknown model family");
}

}  // namespace blockserve
