// Tokenizer: locates, dlmopen()s and calls the SentencePiece shim; validates training options.
#include "base/tokenizer.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/spm_shim/spm_shim.h"
#include "base/status.h"
#include "base/utf8.h"

namespace blockserve {
namespace internal {

// Entry points of the shim, resolved with dlsym.
struct SpmShimApi {
  decltype(&spm_shim_abi_version) abi_version = nullptr;
  decltype(&spm_shim_free) free = nullptr;
  decltype(&spm_shim_train_kv) train_kv = nullptr;
  decltype(&spm_shim_load_file) load_file = nullptr;
  decltype(&spm_shim_load_serialized) load_serialized = nullptr;
  decltype(&spm_shim_processor_free) processor_free = nullptr;
  decltype(&spm_shim_encode) encode = nullptr;
  decltype(&spm_shim_decode) decode = nullptr;
  decltype(&spm_shim_piece_to_id) piece_to_id = nullptr;
  decltype(&spm_shim_id_to_piece) id_to_piece = nullptr;
  decltype(&spm_shim_vocab_size) vocab_size = nullptr;
  decltype(&spm_shim_special_ids) special_ids = nullptr;
  decltype(&spm_shim_id_flags) id_flags = nullptr;
};

}  // namespace internal

namespace {

using ShimApi = internal::SpmShimApi;

constexpr char kShimFileName[] = "libblockserve_spm_shim.so";
constexpr char kShimEnvVar[] = "BLOCKSERVE_SPM_SHIM";

// Resolves `name` into `*fn`; returns false (and appends to `missing`) when absent.
template <typename Fn>
bool Resolve(void* handle, const char* name, Fn* fn, std::vector<std::string>* missing) {
  *fn = reinterpret_cast<Fn>(dlsym(handle, name));
  if (*fn == nullptr) missing->push_back(name);
  return *fn != nullptr;
}

// dlmopen()s `path` into a fresh link-map namespace and resolves the API. On failure returns the
// reason; the handle is deliberately never dlclose()d (unloading a namespace that holds its own
// libc/libstdc++ copy is not worth the risk for a one-time load).
absl::StatusOr<ShimApi> OpenShim(const std::string& path) {
  dlerror();
  void* handle = dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* error = dlerror();
    return absl::NotFoundError(error != nullptr ? error : "dlmopen failed");
  }
  ShimApi api;
  std::vector<std::string> missing;
  Resolve(handle, "spm_shim_abi_version", &api.abi_version, &missing);
  Resolve(handle, "spm_shim_free", &api.free, &missing);
  Resolve(handle, "spm_shim_train_kv", &api.train_kv, &missing);
  Resolve(handle, "spm_shim_load_file", &api.load_file, &missing);
  Resolve(handle, "spm_shim_load_serialized", &api.load_serialized, &missing);
  Resolve(handle, "spm_shim_processor_free", &api.processor_free, &missing);
  Resolve(handle, "spm_shim_encode", &api.encode, &missing);
  Resolve(handle, "spm_shim_decode", &api.decode, &missing);
  Resolve(handle, "spm_shim_piece_to_id", &api.piece_to_id, &missing);
  Resolve(handle, "spm_shim_id_to_piece", &api.id_to_piece, &missing);
  Resolve(handle, "spm_shim_vocab_size", &api.vocab_size, &missing);
  Resolve(handle, "spm_shim_special_ids", &api.special_ids, &missing);
  Resolve(handle, "spm_shim_id_flags", &api.id_flags, &missing);
  if (!missing.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("missing symbols (stale shim build?): ", absl::StrJoin(missing, ", ")));
  }
  const int32_t version = api.abi_version();
  if (version != SPM_SHIM_ABI_VERSION) {
    return absl::FailedPreconditionError(
        absl::StrCat("shim ABI version ", version, ", expected ", SPM_SHIM_ABI_VERSION));
  }
  return api;
}

// Directory of the running executable, or "" when /proc/self/exe cannot be read.
std::string ExecutableDir() {
  std::string buffer(4096, '\0');
  const ssize_t n = readlink("/proc/self/exe", buffer.data(), buffer.size());
  if (n <= 0 || static_cast<size_t>(n) >= buffer.size()) return "";
  buffer.resize(static_cast<size_t>(n));
  const size_t slash = buffer.rfind('/');
  if (slash == std::string::npos) return "";
  return buffer.substr(0, slash);
}

// Tries the candidate locations in order (see tokenizer.h) and returns the first shim that loads.
absl::StatusOr<ShimApi> LocateAndOpenShim() {
  std::vector<std::string> tried;
  const char* env = std::getenv(kShimEnvVar);
  if (env != nullptr && env[0] != '\0') {
    // An explicit override is authoritative: silently falling back to another copy would hide a
    // deployment mistake.
    absl::StatusOr<ShimApi> api = OpenShim(env);
    if (api.ok()) return api;
    return absl::FailedPreconditionError(absl::StrCat("cannot load the SentencePiece shim from $",
                                                      kShimEnvVar, "=", env, ": ",
                                                      api.status().message()));
  }
  std::vector<std::string> candidates;
  const std::string exe_dir = ExecutableDir();
  if (!exe_dir.empty()) {
    candidates.push_back(absl::StrCat(exe_dir, "/../lib/", kShimFileName));
    candidates.push_back(absl::StrCat(exe_dir, "/", kShimFileName));
  }
#ifdef BLOCKSERVE_SPM_SHIM_PATH
  candidates.push_back(BLOCKSERVE_SPM_SHIM_PATH);
#endif
  for (const std::string& path : candidates) {
    // Skip absent files without dlmopen(): every LM_ID_NEWLM attempt may use up one of the few
    // (16) link-map namespaces glibc supports.
    if (access(path.c_str(), F_OK) != 0) {
      tried.push_back(absl::StrCat(path, " (not found)"));
      continue;
    }
    absl::StatusOr<ShimApi> api = OpenShim(path);
    if (api.ok()) return api;
    tried.push_back(absl::StrCat(path, " (", api.status().message(), ")"));
  }
  // Last resort: the bare name, searched like any library (LD_LIBRARY_PATH, ld.so.cache, ...).
  absl::StatusOr<ShimApi> api = OpenShim(kShimFileName);
  if (api.ok()) return api;
  tried.push_back(
      absl::StrCat(kShimFileName, " via the library search path (", api.status().message(), ")"));
  return absl::FailedPreconditionError(
      absl::StrCat("cannot load the SentencePiece shim ", kShimFileName, "; set $", kShimEnvVar,
                   " to its full path. Tried: ", absl::StrJoin(tried, "; ")));
}

// The process-wide shim, loaded on first use (thread-safe function-local static).
absl::StatusOr<const ShimApi*> GetShim() {
  static const absl::StatusOr<ShimApi>* const shim =
      new absl::StatusOr<ShimApi>(LocateAndOpenShim());
  if (!shim->ok()) return shim->status();
  return &shim->value();
}

// Copies a shim-allocated buffer into a std::string and releases it inside the shim.
std::string TakeShimBytes(const ShimApi& api, char* data, size_t len) {
  std::string out = data != nullptr ? std::string(data, len) : std::string();
  api.free(data);
  return out;
}

// Converts a shim status code plus its (shim-allocated) message into an absl::Status.
absl::Status ShimError(const ShimApi& api, int32_t code, char* message, absl::string_view context) {
  const std::string text =
      message != nullptr ? TakeShimBytes(api, message, std::char_traits<char>::length(message))
                         : std::string("unknown error");
  const absl::StatusCode status_code =
      code > 0 && code <= static_cast<int32_t>(absl::StatusCode::kUnauthenticated)
          ? static_cast<absl::StatusCode>(code)
          : absl::StatusCode::kUnknown;
  return absl::Status(status_code, absl::StrCat(context, ": ", text));
}

std::string FormatDouble(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.17g", value);
  return buffer;
}

absl::Status ValidateTrainOptions(const TokenizerTrainOptions& options) {
  if (options.input_files.empty()) {
    return absl::InvalidArgumentError("TrainTokenizer: input_files is empty");
  }
  for (const std::string& file : options.input_files) {
    if (file.empty()) return absl::InvalidArgumentError("TrainTokenizer: empty input file path");
    if (file.find(',') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "TrainTokenizer: input file path '", file,
          "' contains ',', which sentencepiece treats as a list separator; rename the file"));
    }
    std::error_code error;
    if (!std::filesystem::is_regular_file(file, error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("TrainTokenizer: input file '", file, "' does not exist or is not a file"));
    }
    if (access(file.c_str(), R_OK) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("TrainTokenizer: input file '", file, "' is not readable"));
    }
  }
  if (options.model_prefix.empty()) {
    return absl::InvalidArgumentError("TrainTokenizer: model_prefix is empty");
  }
  const std::filesystem::path prefix(options.model_prefix);
  if (!prefix.has_filename()) {
    return absl::InvalidArgumentError(absl::StrCat("TrainTokenizer: model_prefix '",
                                                   options.model_prefix,
                                                   "' names a directory; add a file "
                                                   "name prefix"));
  }
  if (prefix.has_parent_path()) {
    std::error_code error;
    if (!std::filesystem::is_directory(prefix.parent_path(), error)) {
      return absl::InvalidArgumentError(absl::StrCat("TrainTokenizer: output directory '",
                                                     prefix.parent_path().string(),
                                                     "' of model_prefix does not exist"));
    }
  }
  if (options.vocab_size < kMinVocabSize || options.vocab_size > kMaxVocabSize) {
    return absl::InvalidArgumentError(absl::StrCat("TrainTokenizer: vocab_size ",
                                                   options.vocab_size, " is outside [",
                                                   kMinVocabSize, ", ", kMaxVocabSize, "]"));
  }
  constexpr int kSpecialPieces = 4;
  constexpr int kBytePieces = 256;
  if (options.byte_fallback && options.vocab_size <= kSpecialPieces + kBytePieces) {
    return absl::InvalidArgumentError(
        absl::StrCat("TrainTokenizer: vocab_size ", options.vocab_size,
                     " is too small for byte_fallback, "
                     "which needs ",
                     kSpecialPieces, " special + ", kBytePieces, " byte pieces; use more than ",
                     kSpecialPieces + kBytePieces));
  }
  const std::string& type = options.model_type;
  if (type != "unigram" && type != "bpe" && type != "char" && type != "word") {
    return absl::InvalidArgumentError(absl::StrCat("TrainTokenizer: model_type '", type,
                                                   "' is not one of unigram, bpe, char, word"));
  }
  // The numeric ranges below are the ones sentencepiece 0.1.97 enforces (VerifySpec); checking
  // them here turns its terse Internal errors into InvalidArgument with the option name.
  if (!(options.character_coverage >= 0.98 && options.character_coverage <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("TrainTokenizer: character_coverage ",
                                                   options.character_coverage,
                                                   " is outside [0.98, 1]"));
  }
  if (options.input_sentence_size < 0 ||
      (options.input_sentence_size > 0 && options.input_sentence_size <= 100)) {
    return absl::InvalidArgumentError(absl::StrCat("TrainTokenizer: input_sentence_size ",
                                                   options.input_sentence_size,
                                                   " must be 0 (all sentences) or more than 100"));
  }
  if (options.max_sentence_length < 10 || options.max_sentence_length > (1 << 30)) {
    return absl::InvalidArgumentError(absl::StrCat("TrainTokenizer: max_sentence_length ",
                                                   options.max_sentence_length,
                                                   " is outside [10, 2^30]"));
  }
  if (options.num_threads < 1 || options.num_threads > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("TrainTokenizer: num_threads ", options.num_threads, " is outside [1, 128]"));
  }
  if (options.normalization_rule_name.empty()) {
    return absl::InvalidArgumentError("TrainTokenizer: normalization_rule_name is empty");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status TrainTokenizer(const TokenizerTrainOptions& options) {
  RETURN_IF_ERROR(ValidateTrainOptions(options));
  ASSIGN_OR_RETURN(const ShimApi* shim, GetShim());
  const auto flag = [](bool value) { return value ? std::string("true") : std::string("false"); };
  // Values are passed as key/value pairs, never through sentencepiece's space-split flag string,
  // so paths with spaces need no quoting.
  const std::vector<std::pair<std::string, std::string>> flags = {
      {"input", absl::StrJoin(options.input_files, ",")},
      {"model_prefix", options.model_prefix},
      {"vocab_size", absl::StrCat(options.vocab_size)},
      {"model_type", options.model_type},
      {"character_coverage", FormatDouble(options.character_coverage)},
      {"byte_fallback", flag(options.byte_fallback)},
      {"input_sentence_size", absl::StrCat(options.input_sentence_size)},
      {"shuffle_input_sentence", "true"},
      {"max_sentence_length", absl::StrCat(options.max_sentence_length)},
      {"num_threads", absl::StrCat(options.num_threads)},
      {"pad_id", absl::StrCat(kPadId)},
      {"unk_id", absl::StrCat(kUnkId)},
      {"bos_id", absl::StrCat(kBosId)},
      {"eos_id", absl::StrCat(kEosId)},
      {"normalization_rule_name", options.normalization_rule_name},
      {"remove_extra_whitespaces", flag(options.remove_extra_whitespaces)},
      {"minloglevel", options.verbose ? "0" : "1"},
  };
  std::vector<const char*> keys;
  std::vector<const char*> values;
  for (const auto& [key, value] : flags) {
    keys.push_back(key.c_str());
    values.push_back(value.c_str());
  }
  char* error = nullptr;
  const int32_t code = shim->train_kv(keys.data(), values.data(), keys.size(), &error);
  if (code != 0) {
    return ShimError(*shim, code, error,
                     absl::StrCat("TrainTokenizer(model_prefix=", options.model_prefix, ")"));
  }
  return absl::OkStatus();
}

Tokenizer::Tokenizer(const internal::SpmShimApi* shim, spm_shim_processor* processor)
    : shim_(shim), processor_(processor) {
  vocab_size_ = shim_->vocab_size(processor_);
  shim_->special_ids(processor_, &unk_id_, &bos_id_, &eos_id_, &pad_id_);
}

Tokenizer::~Tokenizer() { shim_->processor_free(processor_); }

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_path) {
  ASSIGN_OR_RETURN(const ShimApi* shim, GetShim());
  spm_shim_processor* processor = nullptr;
  char* error = nullptr;
  const int32_t code = shim->load_file(model_path.c_str(), &processor, &error);
  if (code != 0) {
    return ShimError(*shim, code, error, absl::StrCat("loading tokenizer model ", model_path));
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(shim, processor));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::LoadFromSerialized(absl::string_view bytes) {
  ASSIGN_OR_RETURN(const ShimApi* shim, GetShim());
  spm_shim_processor* processor = nullptr;
  char* error = nullptr;
  const int32_t code = shim->load_serialized(bytes.data(), bytes.size(), &processor, &error);
  if (code != 0) {
    return ShimError(
        *shim, code, error,
        absl::StrCat("loading a serialized tokenizer model (", bytes.size(), " bytes)"));
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(shim, processor));
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(absl::string_view text) const {
  const ShimApi& shim = *shim_;
  std::string sanitized;
  if (!IsValidUtf8(text)) {
    sanitized = SanitizeUtf8(text);
    text = sanitized;
  }
  int32_t* ids = nullptr;
  size_t num_ids = 0;
  char* error = nullptr;
  const int32_t code = shim.encode(processor_, text.data(), text.size(), &ids, &num_ids, &error);
  if (code != 0) return ShimError(shim, code, error, "Tokenizer::Encode");
  std::vector<int32_t> out(ids, ids + num_ids);
  shim.free(ids);
  return out;
}

absl::StatusOr<std::string> Tokenizer::Decode(absl::Span<const int32_t> ids) const {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size_) {
      return absl::InvalidArgumentError(
          absl::StrCat("Tokenizer::Decode: id ", ids[i], " at position ", i,
                       " is out of range for vocab size ", vocab_size_));
    }
  }
  const ShimApi& shim = *shim_;
  char* text = nullptr;
  size_t len = 0;
  char* error = nullptr;
  const int32_t code = shim.decode(processor_, ids.data(), ids.size(), &text, &len, &error);
  if (code != 0) return ShimError(shim, code, error, "Tokenizer::Decode");
  return TakeShimBytes(shim, text, len);
}

int32_t Tokenizer::PieceToId(absl::string_view piece) const {
  return shim_->piece_to_id(processor_, piece.data(), piece.size());
}

absl::StatusOr<std::string> Tokenizer::IdToPiece(int32_t id) const {
  if (id < 0 || id >= vocab_size_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Tokenizer::IdToPiece: id ", id, " is out of range for vocab size ", vocab_size_));
  }
  const ShimApi& shim = *shim_;
  char* piece = nullptr;
  size_t len = 0;
  char* error = nullptr;
  const int32_t code = shim.id_to_piece(processor_, id, &piece, &len, &error);
  if (code != 0) return ShimError(shim, code, error, "Tokenizer::IdToPiece");
  return TakeShimBytes(shim, piece, len);
}

int32_t Tokenizer::IdFlags(int32_t id) const { return shim_->id_flags(processor_, id); }

bool Tokenizer::IsByte(int32_t id) const {
  const int32_t flags = IdFlags(id);
  return flags >= 0 && (flags & SPM_SHIM_ID_BYTE) != 0;
}

bool Tokenizer::IsControl(int32_t id) const {
  const int32_t flags = IdFlags(id);
  return flags >= 0 && (flags & SPM_SHIM_ID_CONTROL) != 0;
}

bool Tokenizer::IsUnknown(int32_t id) const {
  const int32_t flags = IdFlags(id);
  return flags >= 0 && (flags & SPM_SHIM_ID_UNKNOWN) != 0;
}

}  // namespace blockserve
