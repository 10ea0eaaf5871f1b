// ExportModelDir / LoadWeights / LoadBrtLm.
#include "trainer/checkpoint_io.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "base/file_io.h"
#include "base/status.h"
#include "models/model_dir.h"

namespace blockserve::trainer {
absl::Status ExportModelDir(BrtLm& model, const std::string& dir, const std::string& tokenizer_model,
                            const nlohmann::json& training) {
  return ExportModelDir(*model, model->config(), dir, tokenizer_model, training);
}

absl::Status ExportModelDir(torch::nn::Module& model, const ModelConfig& model_config, const std::string& dir,
                            const std::string& tokenizer_model, const nlohmann::json& training) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  nlohmann::json config = nlohmann::json::parse(ModelConfigToJson(model_config));
  if (!training.is_null()) config["training"] = training;
  RETURN_IF_ERROR(WriteStringToFileAtomically(absl::StrCat(dir, "/", kConfigFileName), config.dump(2) + "\n"));

  std::vector<torch::Tensor> storage;
  std::vector<std::pair<std::string, ConstTensorView>> tensors;
  // Parameters and buffers (the Reformer's fixed LSH rotations are buffers).
  auto add = [&](const std::string& name, const torch::Tensor& value) {
    torch::Tensor t = value.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    storage.push_back(t);
    tensors.emplace_back(name, ConstTensorView(DType::kF32, t.sizes().vec(), t.data_ptr()));
  };
  for (const auto& p : model.named_parameters()) add(p.key(), p.value());
  for (const auto& b : model.named_buffers()) add(b.key(), b.value());
  RETURN_IF_ERROR(WriteSafetensors(absl::StrCat(dir, "/", kWeightsFileName), tensors,
                                   {{"format", "blockserve"}, {"producer", "blockserve-train"}}));
  if (!tokenizer_model.empty() && tokenizer_model != absl::StrCat(dir, "/", kTokenizerFileName)) {
    std::filesystem::copy_file(tokenizer_model, absl::StrCat(dir, "/", kTokenizerFileName),
                               std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot copy ", tokenizer_model, ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::Status LoadWeights(BrtLm& model, const SafetensorsFile& weights) {
  return LoadWeights(*model, model->config(), weights);
}

absl::Status LoadWeights(torch::nn::Module& model, const ModelConfig& config, const SafetensorsFile& weights) {
  RETURN_IF_ERROR(Annotate(ValidateWeights(config, weights), weights.display_name()));
  torch::NoGradGuard no_grad;
  std::vector<std::pair<std::string, torch::Tensor>> targets;
  for (auto& p : model.named_parameters()) targets.emplace_back(p.key(), p.value());
  for (auto& b : model.named_buffers()) targets.emplace_back(b.key(), b.value());
  for (auto& p : targets) {
    ASSIGN_OR_RETURN(ConstTensorView view, weights.Get(p.first));
    torch::Tensor src;
    switch (view.dtype) {
      case DType::kF32:
        src = torch::from_blob(const_cast<void*>(view.data), view.shape, torch::kFloat32);
        break;
      case DType::kBF16:
        src = torch::from_blob(const_cast<void*>(view.data), view.shape, torch::kBFloat16);
        break;
      case DType::kF16:
        src = torch::from_blob(const_cast<void*>(view.data), view.shape, torch::kFloat16);
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat("tensor '", p.first, "': unsupported dtype"));
    }
    p.second.copy_(src);
  }
  return absl::OkStatus();
}

absl::StatusOr<BrtLm> LoadBrtLm(const std::string& dir) {
  ASSIGN_OR_RETURN(ModelDir opened, OpenModelDir(dir, /*load_tokenizer=*/false));
  if (opened.config.family != ModelFamily::kBrt) {
    return absl::InvalidArgumentError(absl::StrCat(dir, " holds a \"", FamilyName(opened.config.family),
                                                   "\" model, not \"brt\""));
  }
  BrtLm model(opened.config);
  RETURN_IF_ERROR(LoadWeights(model, *opened.weights));
  return model;
}

absl::StatusOr<ReformerLm> LoadReformerLm(const std::string& dir) {
  ASSIGN_OR_RETURN(ModelDir opened, OpenModelDir(dir, /*load_tokenizer=*/false));
  if (opened.config.family != ModelFamily::kReformer) {
    return absl::InvalidArgumentError(absl::StrCat(dir, " holds a \"", FamilyName(opened.config.family),
                                                   "\" model, not \"reformer\""));
  }
  ReformerLm model(opened.config);
  RETURN_IF_ERROR(LoadWeights(*model, opened.config, *opened.weights));
  return model;
}

}  // namespace blockserve::trainer
