// PooledMatmul: a CPU runner's weight products and parallel loops over its own thread pool.
#ifndef BLOCKSERVE_MODELS_POOLED_MATMUL_H_
#define BLOCKSERVE_MODELS_POOLED_MATMUL_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "base/thread_pool.h"
#include "models/weight_store.h"

namespace blockserve {

// Splits work over a thread pool and the calling thread.
// Thread-safety: one call at a time (a runner's Execute is never concurrent).
class PooledMatmul {
 public:
  // Runs everything inline on the calling thread.
  PooledMatmul() = default;
  // num_threads: 0 for one per hardware thread. Also limits BLAS to one thread: GEMMs are
  // split over the pool, and BLAS's own threads would spin against it.
  explicit PooledMatmul(int num_threads);

  // fn over [0, n) in chunks of at least `min_chunk`, split across the pool (inline without one).
  void ParallelFor(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn);
  // y (m, rows) = x @ W^T (BLAS) with the weight rows split over the pool.
  void Gemm(const WeightMatrix& w, const float* x, size_t m, float* y);
  // y (batch, rows) = x @ W^T with the weight rows split over the pool.
  void MatVec(const WeightMatrix& w, const float* x, size_t batch, float* y);

 private:
  std::unique_ptr<ThreadPool> pool_;  // null when running on one thread
};

}  // namespace blockserve

#endif  // BLOCKSERVE_MODELS_POOLED_MATMUL_H_
