// Communicator over c10d::ProcessGroupGloo with a FileStore rendezvous.
#include "trainer/distributed.h"

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include "absl/strings/str_cat.h"

namespace blockserve::trainer {

struct Communicator::Impl {
  c10::intrusive_ptr<::c10d::ProcessGroupGloo> group;
};

Communicator::Communicator(int world_size, int rank, std::unique_ptr<Impl> impl)
    : world_size_(world_size), rank_(rank), impl_(std::move(impl)) {}
Communicator::~Communicator() = default;

absl::StatusOr<std::unique_ptr<Communicator>> Communicator::Create(int world_size, int rank,
                                                                   const std::string& rendezvous,
                                                                   const std::string& interface) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(absl::StrCat("bad rank ", rank, " for world size ", world_size));
  }
  auto impl = std::make_unique<Impl>();
  if (world_size > 1) {
    if (rendezvous.empty()) return absl::InvalidArgumentError("distributed training needs a rendezvous file");
    try {
      auto store = c10::make_intrusive<::c10d::FileStore>(rendezvous, world_size);
      auto options = ::c10d::ProcessGroupGloo::Options::create();
      options->devices.push_back(::c10d::ProcessGroupGloo::createDeviceForInterface(interface));
      options->timeout = std::chrono::minutes(10);
      impl->group = c10::make_intrusive<::c10d::ProcessGroupGloo>(store, rank, world_size, options);
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("cannot join the process group (rank ", rank, " of ",
                                                 world_size, ", rendezvous ", rendezvous, "): ", e.what()));
    }
  }
  return std::unique_ptr<Communicator>(new Communicator(world_size, rank, std::move(impl)));
}

absl::Status Communicator::AllReduceSum(std::vector<torch::Tensor>& tensors) {
  if (world_size_ == 1) return absl::OkStatus();
  try {
    impl_->group->allreduce(tensors)->wait();
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("all-reduce failed: ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status Communicator::AllReduceGradients(const std::vector<torch::Tensor>& params) {
  if (world_size_ == 1) return absl::OkStatus();
  std::vector<torch::Tensor> grads;
  for (const torch::Tensor& p : params) {
    grads.push_back(p.grad().defined() ? p.grad().reshape({-1}) : torch::zeros({p.numel()}, p.options()));
  }
  std::vector<torch::Tensor> flat = {torch::cat(grads)};
  if (auto st = AllReduceSum(flat); !st.ok()) return st;
  int64_t offset = 0;
  torch::NoGradGuard no_grad;
  for (const torch::Tensor& p : params) {
    const int64_t n = p.numel();
    torch::Tensor chunk = flat[0].slice(0, offset, offset + n).view_as(p);
    if (p.grad().defined()) {
      p.grad().copy_(chunk);
    } else {
      p.mutable_grad() = chunk.clone();
    }
    offset += n;
  }
  return absl::OkStatus();
}

absl::Status Communicator::Barrier() {
  if (world_size_ == 1) return absl::OkStatus();
  try {
    impl_->group->barrier()->wait();
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("barrier failed: ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace blockserve::trainer
