// A fixed-size thread pool with a blocking ParallelFor.
#ifndef BLOCKSERVE_BASE_THREAD_POOL_H_
#define BLOCKSERVE_BASE_THREAD_POOL_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace blockserve {

// Runs tasks on `num_threads` worker threads.
// Thread-safety: Schedule and ParallelFor may be called from any thread, including from
// inside a task (ParallelFor from a worker runs the work inline to avoid deadlock).
// The destructor finishes every scheduled task, then joins the workers.
class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()); }

  // Queues `task`; it runs on some worker.
  void Schedule(std::function<void()> task);

  // Calls fn(begin, end) over disjoint ranges covering [0, n), in chunks of at least
  // `min_chunk`, using the workers and the calling thread; returns when all are done.
  void ParallelFor(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn);

  // True when called from one of this pool's workers.
  bool InWorker() const;

 private:
  void WorkerLoop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::vector<std::thread> workers_;
};

}  // namespace blockserve

#endif  // BLOCKSERVE_BASE_THREAD_POOL_H_
