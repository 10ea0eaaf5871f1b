// IncrementalDetokenizer, StopStringMatcher and OutputProcessor.
#include "engine/output_processor.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "base/utf8.h"

namespace blockserve::engine {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer* tokenizer, absl::Span<const int32_t> context)
    : tokenizer_(tokenizer) {
  const size_t keep = std::min<size_t>(context.size(), 5);
  ids_.assign(context.end() - keep, context.end());
  prefix_offset_ = 0;
  read_offset_ = ids_.size();
}

absl::StatusOr<std::string> IncrementalDetokenizer::Push(int32_t id) {
  ids_.push_back(id);
  const absl::Span<const int32_t> all(ids_);
  ASSIGN_OR_RETURN(std::string prefix, tokenizer_->Decode(all.subspan(prefix_offset_, read_offset_ - prefix_offset_)));
  ASSIGN_OR_RETURN(std::string text, tokenizer_->Decode(all.subspan(prefix_offset_)));
  const bool incomplete = absl::EndsWith(text, kUtf8ReplacementChar);
  if (text.size() <= prefix.size() || (incomplete && ids_.size() - read_offset_ < kMaxPending)) return std::string();
  std::string delta = absl::StartsWith(text, prefix) ? text.substr(prefix.size()) : text.substr(std::min(prefix.size(), text.size()));
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  return delta;
}

absl::StatusOr<std::string> IncrementalDetokenizer::Flush() {
  if (read_offset_ == ids_.size()) return std::string();
  const absl::Span<const int32_t> all(ids_);
  ASSIGN_OR_RETURN(std::string prefix, tokenizer_->Decode(all.subspan(prefix_offset_, read_offset_ - prefix_offset_)));
  ASSIGN_OR_RETURN(std::string text, tokenizer_->Decode(all.subspan(prefix_offset_)));
  prefix_offset_ = read_offset_ = ids_.size();
  return text.size() > prefix.size() ? text.substr(prefix.size()) : std::string();
}

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
}

StopStringMatcher::Result StopStringMatcher::Push(absl::string_view text) {
  Result r;
  buffer_.append(text.data(), text.size());
  size_t first = std::string::npos;
  for (const std::string& s : stops_) {
    const size_t pos = buffer_.find(s);
    if (pos < first) {
      first = pos;
      r.matched = s;
    }
  }
  if (first != std::string::npos) {
    r.emit = buffer_.substr(0, first);
    r.stopped = true;
    buffer_.clear();
    return r;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    for (size_t k = std::min(s.size() - 1, buffer_.size()); k > hold; --k) {
      if (buffer_.compare(buffer_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  r.emit = buffer_.substr(0, buffer_.size() - hold);
  buffer_.erase(0, buffer_.size() - hold);
  return r;
}

std::string StopStringMatcher::Flush() {
  std::string out;
  out.swap(buffer_);
  return out;
}

absl::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return "none";
    case FinishReason::kLength: return "length";
    case FinishReason::kEos: return "eos";
    case FinishReason::kStopToken: return "stop_token";
    case FinishReason::kStopString: return "stop_sequence";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
  }
  return "unknown";
}

absl::Status ValidateStopParams(const StopParams& p, int vocab_size) {
  if (p.max_new_tokens < 1 || p.max_new_tokens > (1 << 24)) {
    return absl::InvalidArgumentError(absl::StrCat("max_new_tokens must be in [1, 16777216], got ", p.max_new_tokens));
  }
  for (size_t i = 0; i < p.stop_token_ids.size(); ++i) {
    if (p.stop_token_ids[i] < 0 || p.stop_token_ids[i] >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("stop_token_ids[", i, "] must be a token id in [0, ",
                                                     vocab_size - 1, "], got ", p.stop_token_ids[i]));
    }
  }
  if (p.stop_strings.size() > 16) {
    return absl::InvalidArgumentError(absl::StrCat("at most 16 stop strings, got ", p.stop_strings.size()));
  }
  for (size_t i = 0; i < p.stop_strings.size(); ++i) {
    const std::string& s = p.stop_strings[i];
    if (s.empty() || s.size() > 256 || !IsValidUtf8(s)) {
      return absl::InvalidArgumentError(
          absl::StrCat("stop_strings[", i, "] must be 1 to 256 bytes of valid UTF-8"));
    }
  }
  return absl::OkStatus();
}

OutputProcessor::OutputProcessor(const Tokenizer* tokenizer, const StopParams& params,
                                 absl::Span<const int32_t> context)
    : tokenizer_(tokenizer), params_(params), detok_(tokenizer, context), stops_(params.stop_strings) {}

absl::StatusOr<OutputProcessor::Step> OutputProcessor::Append(int32_t id) {
  Step step;
  ++generated_;
  const bool eos = !params_.ignore_eos && id == tokenizer_->eos_id();
  const bool stop_token =
      std::find(params_.stop_token_ids.begin(), params_.stop_token_ids.end(), id) != params_.stop_token_ids.end();
  if (eos || stop_token) {
    ASSIGN_OR_RETURN(std::string rest, detok_.Flush());
    step.text = stops_.Push(rest).emit + stops_.Flush();
    step.finish = eos ? FinishReason::kEos : FinishReason::kStopToken;
    return step;
  }
  ASSIGN_OR_RETURN(std::string delta, detok_.Push(id));
  StopStringMatcher::Result r = stops_.Push(delta);
  step.text = std::move(r.emit);
  if (r.stopped) {
    step.finish = FinishReason::kStopString;
    return step;
  }
  if (generated_ >= params_.max_new_tokens) {
    ASSIGN_OR_RETURN(std::string rest, detok_.Flush());
    StopStringMatcher::Result last = stops_.Push(rest);
    step.text += last.emit;
    if (last.stopped) {
      step.finish = FinishReason::kStopString;
      return step;
    }
    step.text += stops_.Flush();
    step.finish = FinishReason::kLength;
  }
  return step;
}

}  // namespace blockserve::engine
