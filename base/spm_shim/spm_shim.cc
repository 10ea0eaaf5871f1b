// spm_shim C ABI over libsentencepiece; includes only sentencepiece and standard headers.
#include "base/spm_shim/spm_shim.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

struct spm_shim_processor {
  sentencepiece::SentencePieceProcessor sp;
};

namespace {

constexpr int32_t kOk = 0;
constexpr int32_t kUnknown = 2;
constexpr int32_t kInvalidArgument = 3;
constexpr int32_t kResourceExhausted = 8;
constexpr int32_t kOutOfRange = 11;
constexpr int32_t kInternal = 13;

// Copies `len` bytes into a NUL-terminated malloc'ed buffer; nullptr when out of memory.
char* MallocCopy(const char* data, size_t len) {
  char* out = static_cast<char*>(std::malloc(len + 1));
  if (out == nullptr) return nullptr;
  if (len > 0) std::memcpy(out, data, len);
  out[len] = '\0';
  return out;
}

// Stores a copy of `message` in *error_out (if requested) and returns `code`.
int32_t Fail(int32_t code, const std::string& message, char** error_out) {
  if (error_out != nullptr) *error_out = MallocCopy(message.data(), message.size());
  return code;
}

int32_t FailStatus(const sentencepiece::util::Status& status, char** error_out) {
  const int32_t code = static_cast<int32_t>(status.code());
  const char* message = status.error_message();
  return Fail(code == kOk ? kUnknown : code, message != nullptr ? message : "", error_out);
}

void ClearError(char** error_out) {
  if (error_out != nullptr) *error_out = nullptr;
}

// Concatenates three C strings into a malloc'ed buffer without any C++ allocation (safe to call
// from a catch handler, even after std::bad_alloc); nullptr when out of memory.
char* MallocConcat(const char* a, const char* b, const char* c) {
  const size_t la = std::strlen(a);
  const size_t lb = std::strlen(b);
  const size_t lc = std::strlen(c);
  char* out = static_cast<char*>(std::malloc(la + lb + lc + 1));
  if (out == nullptr) return nullptr;
  std::memcpy(out, a, la);
  std::memcpy(out + la, b, lb);
  std::memcpy(out + la + lb, c, lc);
  out[la + lb + lc] = '\0';
  return out;
}

// Runs `body` (returning an int32_t status) with every C++ exception turned into an error code.
// The handlers themselves never throw.
template <typename Body>
int32_t Guard(const char* what, char** error_out, Body&& body) noexcept {
  ClearError(error_out);
  int32_t code = kInternal;
  const char* detail = ": unknown exception";
  const char* exception_text = "";
  try {
    return body();
  } catch (const std::bad_alloc&) {
    code = kResourceExhausted;
    detail = ": out of memory";
  } catch (const std::exception& e) {
    detail = ": exception: ";
    exception_text = e.what();
  } catch (...) {
  }
  if (error_out != nullptr) {
    std::free(*error_out);  // A partially reported message, if any.
    *error_out = MallocConcat(what, detail, exception_text);
  }
  return code;
}

// sentencepiece training touches process-wide state (log-level flag, pretokenizer), so one at a
// time.
std::mutex& TrainMutex() {
  static std::mutex* mu = new std::mutex;
  return *mu;
}

// Runs `train` (returning a sentencepiece status) under the training mutex.
template <typename TrainFn>
int32_t TrainLocked(char** error_out, TrainFn&& train) {
  std::lock_guard<std::mutex> lock(TrainMutex());
  const sentencepiece::util::Status status = train();
  if (!status.ok()) return FailStatus(status, error_out);
  return kOk;
}

bool IdInRange(const spm_shim_processor* processor, int32_t id) {
  return id >= 0 && id < processor->sp.GetPieceSize();
}

std::string IdRangeMessage(const spm_shim_processor* processor, int32_t id) {
  return "id " + std::to_string(id) + " is outside the vocabulary [0, " +
         std::to_string(processor->sp.GetPieceSize()) + ")";
}

// Creates a processor, fills it with `load` and hands it to *out on success.
template <typename LoadFn>
int32_t LoadProcessor(const char* what, spm_shim_processor** out, char** error_out, LoadFn&& load) {
  return Guard(what, error_out, [&]() -> int32_t {
    if (out == nullptr) return Fail(kInvalidArgument, std::string(what) + ": null out", error_out);
    *out = nullptr;
    auto processor = std::make_unique<spm_shim_processor>();
    const sentencepiece::util::Status status = load(processor->sp);
    if (!status.ok()) return FailStatus(status, error_out);
    *out = processor.release();
    return kOk;
  });
}

}  // namespace

extern "C" {

int32_t spm_shim_abi_version(void) { return SPM_SHIM_ABI_VERSION; }

void spm_shim_free(void* ptr) { std::free(ptr); }

int32_t spm_shim_train_args(const char* args, char** error_out) {
  return Guard("spm_shim_train_args", error_out, [&]() -> int32_t {
    if (args == nullptr) return Fail(kInvalidArgument, "null args", error_out);
    const std::string arg_string(args);
    return TrainLocked(error_out,
                       [&]() { return sentencepiece::SentencePieceTrainer::Train(arg_string); });
  });
}

int32_t spm_shim_train_kv(const char* const* keys, const char* const* values, size_t num_flags,
                          char** error_out) {
  return Guard("spm_shim_train_kv", error_out, [&]() -> int32_t {
    if (num_flags > 0 && (keys == nullptr || values == nullptr)) {
      return Fail(kInvalidArgument, "null keys or values", error_out);
    }
    std::unordered_map<std::string, std::string> kwargs;
    for (size_t i = 0; i < num_flags; ++i) {
      if (keys[i] == nullptr || values[i] == nullptr) {
        return Fail(kInvalidArgument, "null key or value at index " + std::to_string(i), error_out);
      }
      if (!kwargs.emplace(keys[i], values[i]).second) {
        return Fail(kInvalidArgument, std::string("duplicate training flag '") + keys[i] + "'",
                    error_out);
      }
    }
    return TrainLocked(error_out,
                       [&]() { return sentencepiece::SentencePieceTrainer::Train(kwargs); });
  });
}

int32_t spm_shim_load_file(const char* path, spm_shim_processor** out, char** error_out) {
  return LoadProcessor("spm_shim_load_file", out, error_out,
                       [&](sentencepiece::SentencePieceProcessor& sp) {
                         if (path == nullptr) {
                           return sentencepiece::util::Status(
                               sentencepiece::util::StatusCode::kInvalidArgument, "null path");
                         }
                         return sp.Load(path);
                       });
}

int32_t spm_shim_load_serialized(const char* data, size_t len, spm_shim_processor** out,
                                 char** error_out) {
  return LoadProcessor(
      "spm_shim_load_serialized", out, error_out, [&](sentencepiece::SentencePieceProcessor& sp) {
        if (data == nullptr && len > 0) {
          return sentencepiece::util::Status(sentencepiece::util::StatusCode::kInvalidArgument,
                                             "null data");
        }
        return sp.LoadFromSerializedProto(std::string_view(data == nullptr ? "" : data, len));
      });
}

void spm_shim_processor_free(spm_shim_processor* processor) { delete processor; }

int32_t spm_shim_encode(const spm_shim_processor* processor, const char* text, size_t len,
                        int32_t** ids_out, size_t* num_ids_out, char** error_out) {
  return Guard("spm_shim_encode", error_out, [&]() -> int32_t {
    if (processor == nullptr || ids_out == nullptr || num_ids_out == nullptr ||
        (text == nullptr && len > 0)) {
      return Fail(kInvalidArgument, "spm_shim_encode: null argument", error_out);
    }
    *ids_out = nullptr;
    *num_ids_out = 0;
    std::vector<int> ids;
    const sentencepiece::util::Status status =
        processor->sp.Encode(std::string_view(text == nullptr ? "" : text, len), &ids);
    if (!status.ok()) return FailStatus(status, error_out);
    if (ids.empty()) return kOk;
    auto* buffer = static_cast<int32_t*>(std::malloc(ids.size() * sizeof(int32_t)));
    if (buffer == nullptr) {
      return Fail(kResourceExhausted, "spm_shim_encode: out of memory", error_out);
    }
    for (size_t i = 0; i < ids.size(); ++i) buffer[i] = static_cast<int32_t>(ids[i]);
    *ids_out = buffer;
    *num_ids_out = ids.size();
    return kOk;
  });
}

int32_t spm_shim_decode(const spm_shim_processor* processor, const int32_t* ids, size_t num_ids,
                        char** text_out, size_t* len_out, char** error_out) {
  return Guard("spm_shim_decode", error_out, [&]() -> int32_t {
    if (processor == nullptr || text_out == nullptr || len_out == nullptr ||
        (ids == nullptr && num_ids > 0)) {
      return Fail(kInvalidArgument, "spm_shim_decode: null argument", error_out);
    }
    *text_out = nullptr;
    *len_out = 0;
    std::vector<int> id_vector(num_ids);
    for (size_t i = 0; i < num_ids; ++i) {
      if (!IdInRange(processor, ids[i])) {
        return Fail(kOutOfRange, IdRangeMessage(processor, ids[i]), error_out);
      }
      id_vector[i] = ids[i];
    }
    std::string text;
    const sentencepiece::util::Status status = processor->sp.Decode(id_vector, &text);
    if (!status.ok()) return FailStatus(status, error_out);
    char* buffer = MallocCopy(text.data(), text.size());
    if (buffer == nullptr) {
      return Fail(kResourceExhausted, "spm_shim_decode: out of memory", error_out);
    }
    *text_out = buffer;
    *len_out = text.size();
    return kOk;
  });
}

int32_t spm_shim_piece_to_id(const spm_shim_processor* processor, const char* piece, size_t len) {
  if (processor == nullptr) return -1;
  try {
    return processor->sp.PieceToId(std::string_view(piece == nullptr ? "" : piece, len));
  } catch (...) {
    return processor->sp.unk_id();
  }
}

int32_t spm_shim_id_to_piece(const spm_shim_processor* processor, int32_t id, char** piece_out,
                             size_t* len_out, char** error_out) {
  return Guard("spm_shim_id_to_piece", error_out, [&]() -> int32_t {
    if (processor == nullptr || piece_out == nullptr || len_out == nullptr) {
      return Fail(kInvalidArgument, "spm_shim_id_to_piece: null argument", error_out);
    }
    *piece_out = nullptr;
    *len_out = 0;
    if (!IdInRange(processor, id)) {
      return Fail(kOutOfRange, IdRangeMessage(processor, id), error_out);
    }
    const std::string& piece = processor->sp.IdToPiece(id);
    char* buffer = MallocCopy(piece.data(), piece.size());
    if (buffer == nullptr) {
      return Fail(kResourceExhausted, "spm_shim_id_to_piece: out of memory", error_out);
    }
    *piece_out = buffer;
    *len_out = piece.size();
    return kOk;
  });
}

int32_t spm_shim_vocab_size(const spm_shim_processor* processor) {
  return processor == nullptr ? 0 : processor->sp.GetPieceSize();
}

void spm_shim_special_ids(const spm_shim_processor* processor, int32_t* unk_id, int32_t* bos_id,
                          int32_t* eos_id, int32_t* pad_id) {
  const bool ok = processor != nullptr;
  if (unk_id != nullptr) *unk_id = ok ? processor->sp.unk_id() : -1;
  if (bos_id != nullptr) *bos_id = ok ? processor->sp.bos_id() : -1;
  if (eos_id != nullptr) *eos_id = ok ? processor->sp.eos_id() : -1;
  if (pad_id != nullptr) *pad_id = ok ? processor->sp.pad_id() : -1;
}

int32_t spm_shim_id_flags(const spm_shim_processor* processor, int32_t id) {
  if (processor == nullptr || !IdInRange(processor, id)) return -1;
  int32_t flags = 0;
  if (processor->sp.IsUnknown(id)) flags |= SPM_SHIM_ID_UNKNOWN;
  if (processor->sp.IsControl(id)) flags |= SPM_SHIM_ID_CONTROL;
  if (processor->sp.IsByte(id)) flags |= SPM_SHIM_ID_BYTE;
  if (processor->sp.IsUnused(id)) flags |= SPM_SHIM_ID_UNUSED;
  return flags;
}

}  // extern "C"
