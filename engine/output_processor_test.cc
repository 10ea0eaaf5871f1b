// Incremental detokenization (never broken UTF-8), stop strings across token boundaries and
// the stop conditions of OutputProcessor, with a real SentencePiece model.
#include "engine/output_processor.h"

#include "base/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/test_util.h"

namespace blockserve::engine {
namespace {

using ::testing::HasSubstr;

const Tokenizer& Tok() {
  static const Tokenizer* tok = [] {
    auto path = testing::SmallKjvTokenizer(400);
    EXPECT_TRUE(path.ok()) << path.status();
    auto t = Tokenizer::Load(*path);
    EXPECT_TRUE(t.ok()) << t.status();
    return t->release();
  }();
  return *tok;
}

TEST(IncrementalDetokenizerTest, StreamsExactlyTheTextWithoutBrokenCharacters) {
  const std::vector<std::string> texts = {
      "In the beginning God created the heaven and the earth.", "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",
      "emoji \xF0\x9F\x98\x80\xF0\x9F\x8E\x89 end", "  two  spaces\tand tab\n"};
  for (const std::string& text : texts) {
    auto ids = Tok().Encode(text);
    ASSERT_TRUE(ids.ok());
    IncrementalDetokenizer detok(&Tok(), {});
    std::string streamed;
    for (int32_t id : *ids) {
      auto delta = detok.Push(id);
      ASSERT_TRUE(delta.ok());
      EXPECT_TRUE(IsValidUtf8(*delta)) << "broken UTF-8 emitted for '" << text << "'";
      EXPECT_EQ(delta->find("\xEF\xBF\xBD"), std::string::npos) << "U+FFFD emitted mid-character";
      streamed += *delta;
    }
    streamed += *detok.Flush();
    EXPECT_EQ(streamed, text);
  }
}

TEST(IncrementalDetokenizerTest, PromptContextKeepsTheLeadingSpace) {
  auto ids = Tok().Encode("And God said, Let there be light");
  ASSERT_TRUE(ids.ok());
  for (size_t k : {1, 2, 3}) {
    const std::vector<int32_t> context(ids->begin(), ids->begin() + k);
    IncrementalDetokenizer detok(&Tok(), context);
    std::string streamed;
    for (size_t i = k; i < ids->size(); ++i) streamed += *detok.Push((*ids)[i]);
    streamed += *detok.Flush();
    const std::string whole = *Tok().Decode(*ids), head = *Tok().Decode(context);
    EXPECT_EQ(head + streamed, whole) << "k=" << k;
  }
}

TEST(StopStringMatcherTest, MatchesAcrossPiecesAndHoldsBackPossibleStarts) {
  const std::string text = "In the beginning God created the heaven";
  for (const std::string stop : {"God", "beginning G", "heaven", "n the b"}) {
    StopStringMatcher m({stop, "never appears"});
    std::string emitted;
    bool stopped = false;
    for (char c : text) {  // one byte at a time: the hardest split
      auto r = m.Push(std::string(1, c));
      emitted += r.emit;
      if (r.stopped) {
        stopped = true;
        EXPECT_EQ(r.matched, stop);
        break;
      }
    }
    EXPECT_TRUE(stopped) << stop;
    EXPECT_EQ(emitted, text.substr(0, text.find(stop))) << stop;
  }
  StopStringMatcher m({"xyz"});
  EXPECT_EQ(m.Push("abcx").emit, "abc");
  EXPECT_EQ(m.Push("y").emit, "");
  EXPECT_EQ(m.Push("q").emit, "xyq");
  EXPECT_EQ(m.Push("xy").emit, "");
  EXPECT_EQ(m.Flush(), "xy");
}

TEST(OutputProcessorTest, StopConditions) {
  auto ids = Tok().Encode("In the beginning God created the heaven and the earth.");
  ASSERT_TRUE(ids.ok());
  auto run = [&](const StopParams& params, std::vector<int32_t> seq, FinishReason* reason) {
    OutputProcessor p(&Tok(), params, {});
    std::string text;
    *reason = FinishReason::kNone;
    for (int32_t id : seq) {
      auto step = p.Append(id);
      EXPECT_TRUE(step.ok());
      text += step->text;
      if (step->finish != FinishReason::kNone) {
        *reason = step->finish;
        break;
      }
    }
    return text;
  };
  FinishReason reason;
  StopParams params;
  params.max_new_tokens = 3;
  std::string text = run(params, *ids, &reason);
  EXPECT_EQ(reason, FinishReason::kLength);
  EXPECT_EQ(text, *Tok().Decode(absl::MakeSpan(*ids).subspan(0, 3)));

  params = StopParams();
  std::vector<int32_t> with_eos(ids->begin(), ids->begin() + 4);
  with_eos.push_back(Tok().eos_id());
  with_eos.push_back((*ids)[5]);
  text = run(params, with_eos, &reason);
  EXPECT_EQ(reason, FinishReason::kEos);
  EXPECT_EQ(text, *Tok().Decode(absl::MakeSpan(*ids).subspan(0, 4)));

  params.stop_token_ids = {(*ids)[2]};
  run(params, *ids, &reason);
  EXPECT_EQ(reason, FinishReason::kStopToken);

  params = StopParams();
  params.stop_strings = {"God cr"};
  text = run(params, *ids, &reason);
  EXPECT_EQ(reason, FinishReason::kStopString);
  EXPECT_EQ(text, "In the beginning ");
}

TEST(OutputProcessorTest, ValidateStopParams) {
  StopParams p;
  p.max_new_tokens = 0;
  EXPECT_THAT(std::string(ValidateStopParams(p, 400).message()), HasSubstr("max_new_tokens must be in [1,"));
  p = StopParams();
  p.stop_token_ids = {5, 400};
  EXPECT_THAT(std::string(ValidateStopParams(p, 400).message()), HasSubstr("stop_token_ids[1] must be a token id in [0, 399]"));
  p = StopParams();
  p.stop_strings = {"ok", ""};
  EXPECT_THAT(std::string(ValidateStopParams(p, 400).message()), HasSubstr("stop_strings[1]"));
  p.stop_strings = {"\xff"};
  EXPECT_FALSE(ValidateStopParams(p, 400).ok());
  EXPECT_TRUE(ValidateStopParams(StopParams(), 400).ok());
}

}  // namespace
}  // namespace blockserve::engine
