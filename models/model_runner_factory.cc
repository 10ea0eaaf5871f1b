// LoadModelRunner: model directory -> family-specific runner.
#include "models/model_runner_factory.h"

#include <dlfcn.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "models/model_dir.h"

namespace blockserve {
namespace {

#ifdef BLOCKSERVE_HAVE_CUDA
// What cudaGetDeviceCount says, asked of the CUDA runtime loaded with dlopen. Linking the
// runtime into the server instead is not an option: a library loaded at start-up gets static
// TLS carved from every thread's stack, and civetweb's small worker stacks (the /metrics
// server) then overflow. A library loaded with dlopen gets dynamic TLS.
// Returns the device count, or -1 with the reason.
int CudaDeviceCount(std::string* reason) {
  void* lib = nullptr;
  for (const char* name : {"libcudart.so", "libcudart.so.13", "libcudart.so.12"}) {
    lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib != nullptr) break;
  }
  if (lib == nullptr) {
    *reason = "the CUDA runtime library (libcudart.so) is not installed";
    return -1;
  }
  using CountFn = int (*)(int*);
  using ErrorStringFn = const char* (*)(int);
  auto count_fn = reinterpret_cast<CountFn>(dlsym(lib, "cudaGetDeviceCount"));
  auto error_fn = reinterpret_cast<ErrorStringFn>(dlsym(lib, "cudaGetErrorString"));
  if (count_fn == nullptr) {
    *reason = "libcudart.so has no cudaGetDeviceCount";
    return -1;
  }
  int count = 0;
  const int err = count_fn(&count);
  // The library stays loaded: the runtime does not support being unloaded and reloaded.
  if (err != 0) {
    *reason = absl::StrCat("cudaGetDeviceCount: CUDA error ", err,
                           error_fn != nullptr ? absl::StrCat(" (", error_fn(err), ")") : "");
    return -1;
  }
  if (count == 0) *reason = "cudaGetDeviceCount found no device";
  return count;
}
#endif  // BLOCKSERVE_HAVE_CUDA

// OK for "cpu". For "cuda": FailedPrecondition saying why no GPU can be used (no CUDA in this
// build, no runtime, no device or driver), else Unimplemented: the CUDA execution backend is not
// finished (docs/gpu.md). Anything else: InvalidArgument.
absl::Status CheckDevice(const std::string& device) {
  if (device == "cpu") return absl::OkStatus();
  if (device != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat("device '", device, "': must be cpu or cuda"));
  }
#ifdef BLOCKSERVE_HAVE_CUDA
  std::string reason;
  const int count = CudaDeviceCount(&reason);
  if (count <= 0) {
    return absl::FailedPreconditionError(absl::StrCat("device cuda: no usable CUDA device (", reason,
                                                      "); use --device=cpu"));
  }
  return absl::UnimplementedError(absl::StrCat(
      "device cuda: ", count, " device(s) found, but the CUDA execution backend is not finished yet "
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
