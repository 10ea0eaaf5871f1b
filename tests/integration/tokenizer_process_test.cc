// Proves the dlmopen'ed SentencePiece shim works in a process that links gRPC, protobuf and torch.
#include <dlfcn.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/stubs/common.h>
#include <grpcpp/grpcpp.h>
#include <stdlib.h>
#include <torch/types.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "base/tokenizer.h"
#include "gtest/gtest.h"

namespace blockserve {
namespace {

// Exercises libprotobuf 3.21 (the version libsentencepiece's embedded 3.14 would clash with).
void CheckProtobuf() {
  GOOGLE_PROTOBUF_VERIFY_VERSION;
  google::protobuf::Struct message;
  (*message.mutable_fields())["model"].set_string_value("kjv");
  (*message.mutable_fields())["vocab_size"].set_number_value(600);
  const std::string bytes = message.SerializeAsString();
  google::protobuf::Struct parsed;
  ASSERT_TRUE(parsed.ParseFromString(bytes));
  EXPECT_EQ(parsed.fields().at("model").string_value(), "kjv");
  EXPECT_EQ(parsed.fields().at("vocab_size").number_value(), 600);
  EXPECT_EQ(google::protobuf::internal::VersionString(GOOGLE_PROTOBUF_VERSION).substr(0, 5),
            "3.21.");
}

void CheckTorch() {
  const torch::Tensor sum = torch::ones({2, 2}).sum();
  EXPECT_EQ(sum.item<float>(), 4.0f);
}

// Genesis from bible-kjv without the verse references; "" when `bible` is unavailable.
std::string GenesisText() {
  if (std::system("command -v bible >/dev/null 2>&1") != 0) return "";
  FILE* pipe = popen("bible -f 'Gen1:1-Gen50:26' 2>/dev/null", "r");
  if (pipe == nullptr) return "";
  std::string raw;
  char chunk[4096];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof(chunk), pipe)) > 0) raw.append(chunk, n);
  pclose(pipe);
  std::istringstream lines(raw);
  std::string line;
  std::string text;
  while (std::getline(lines, line)) {
    const size_t space = line.find(' ');
    if (space == std::string::npos || line.rfind("Ge", 0) != 0) continue;
    text += line.substr(space + 1) + "\n";
  }
  return text;
}

TEST(TokenizerProcessTest, SentencePieceCoexistsWithGrpcProtobufAndTorch) {
  const std::string grpc_version = grpc::Version();
  EXPECT_FALSE(grpc_version.empty());
  CheckProtobuf();
  CheckTorch();

  const std::string genesis = GenesisText();
  if (genesis.empty()) {
    GTEST_SKIP() << "the `bible` command (Debian package bible-kjv) is missing; install "
                    "bible-kjv to run the SentencePiece part of this test";
  }
  std::string dir_template = ::testing::TempDir() + "/tokenizer_process_XXXXXX";
  ASSERT_NE(mkdtemp(dir_template.data()), nullptr);
  struct RemoveOnExit {
    std::string path;
    ~RemoveOnExit() {
      std::error_code error;
      std::filesystem::remove_all(path, error);
    }
  } cleanup{dir_template};
  const std::string corpus = dir_template + "/genesis.txt";
  {
    std::ofstream out(corpus, std::ios::binary);
    out << genesis;
    ASSERT_TRUE(static_cast<bool>(out));
  }
  TokenizerTrainOptions options;
  options.input_files = {corpus};
  options.model_prefix = dir_template + "/kjv";
  options.vocab_size = 600;
  options.input_sentence_size = 1000;
  const absl::Status trained = TrainTokenizer(options);
  ASSERT_TRUE(trained.ok()) << trained;
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::Load(options.model_prefix + ".model");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->vocab_size(), 600);
  EXPECT_EQ((*tokenizer)->pad_id(), 0);

  const std::vector<std::string> texts = {
      "In the beginning God created the heaven and the earth.",
      "For God so loved the world, that he gave his only begotten Son.",
      "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80",
  };
  for (const std::string& text : texts) {
    absl::StatusOr<std::vector<int32_t>> ids = (*tokenizer)->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    absl::StatusOr<std::string> decoded = (*tokenizer)->Decode(*ids);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, text);
  }

  // libsentencepiece (and its protobuf 3.14) lives only in the shim's private namespace: the
  // main namespace never loaded it, and protobuf/torch still work after training and encoding.
  void* leaked = dlopen("libsentencepiece.so.0", RTLD_NOW | RTLD_NOLOAD);
  EXPECT_EQ(leaked, nullptr) << "libsentencepiece was loaded into the main link-map namespace";
  if (leaked != nullptr) dlclose(leaked);
  CheckProtobuf();
  CheckTorch();
  std::printf("grpc %s, protobuf %s, torch ones(2,2).sum() ok, tokenizer vocab %d\n",
              grpc_version.c_str(),
              google::protobuf::internal::VersionString(GOOGLE_PROTOBUF_VERSION).c_str(),
              (*tokenizer)->vocab_size());
}

}  // namespace
}  // namespace blockserve
