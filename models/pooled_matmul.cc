// PooledMatmul: weight rows split into pool tasks sized to amortize waking a worker.
#include "models/pooled_matmul.h"

#include <algorithm>
#include <thread>

#include "kernels/cpu/gemm.h"

namespace blockserve {
namespace {

// Rows of `w` per pool task: at least `min_rows`, and enough multiply-adds (about 256K) that
// waking a worker (tens of microseconds) does not cost more than it saves on small models.
int64_t MinRowsPerTask(const WeightMatrix& w, size_t batch, int64_t min_rows) {
  const int64_t per_row = std::max<int64_t>(1, w.cols * static_cast<int64_t>(batch));
  return std::max<int64_t>(min_rows, (int64_t{1} << 18) / per_row);
}

}  // namespace

PooledMatmul::PooledMatmul(int num_threads) {
  int threads = num_threads > 0 ? num_threads : static_cast<int>(std::thread::hardware_concurrency());
  threads = std::max(1, threads);
  // ParallelFor runs on the workers and the calling thread.
  if (threads > 1) pool_ = std::make_unique<ThreadPool>(threads - 1);
  cpu::SetBlasThreads(1);
}

void PooledMatmul::ParallelFor(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn) {
  if (pool_ == nullptr) {
    if (n > 0) fn(0, n);
    return;
  }
  pool_->ParallelFor(n, min_chunk, fn);
}

void PooledMatmul::Gemm(const WeightMatrix& w, const float* x, size_t m, float* y) {
  ParallelFor(w.rows, MinRowsPerTask(w, m, 64), [&](int64_t begin, int64_t end) {
    w.Gemm(x, m, y, static_cast<size_t>(begin), static_cast<size_t>(end));
  });
}

void PooledMatmul::MatVec(const WeightMatrix& w, const float* x, size_t batch, float* y) {
  // Chunks of at least 32 rows keep the pool's overhead small next to the row reads.
  ParallelFor(w.rows, MinRowsPerTask(w, batch, 32), [&](int64_t begin, int64_t end) {
    w.MatVec(x, batch, y, static_cast<size_t>(begin), static_cast<size_t>(end));
  });
}

}  // namespace blockserve
