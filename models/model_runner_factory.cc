// LoadModelRunner: model directory -> family-specific runner.
#include "models/model_runner_factory.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "models/model_dir.h"

namespace blockserve {

absl::StatusOr<std::unique_ptr<engine::ModelRunner>> LoadModelRunner(const std::string& dir,
                                                                     const RunnerOptions& options) {
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
