// Data-parallel communication for the trainer: Gloo all-reduce over a file rendezvous.
#ifndef BLOCKSERVE_TRAINER_DISTRIBUTED_H_
#define BLOCKSERVE_TRAINER_DISTRIBUTED_H_

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace blockserve::trainer {

// A process group of `world_size` trainer processes on one machine (torch.distributed's Gloo
// backend, rendezvous through a shared file). With world_size 1 every call is a no-op.
// Thread-safety: one thread per process uses it.
class Communicator {
 public:
  // `rendezvous`: a file path all ranks share (created by rank 0's store); `interface`: the
  // network interface Gloo binds to ("lo" for one machine).
  static absl::StatusOr<std::unique_ptr<Communicator>> Create(int world_size, int rank,
                                                              const std::string& rendezvous,
                                                              const std::string& interface = "lo");
  ~Communicator();

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }

  // Sums `tensors` (CPU, float or double) elementwise over all ranks, in place.
  absl::Status AllReduceSum(std::vector<torch::Tensor>& tensors);
  // Sums the gradients of `params` over all ranks (one flattened all-reduce).
  absl::Status AllReduceGradients(const std::vector<torch::Tensor>& params);
  absl::Status Barrier();

 private:
  struct Impl;
  Communicator(int world_size, int rank, std::unique_ptr<Impl> impl);
  int world_size_;
  int rank_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace blockserve::trainer

#endif  // BLOCKSERVE_TRAINER_DISTRIBUTED_H_
