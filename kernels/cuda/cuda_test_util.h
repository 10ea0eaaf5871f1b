// Test-only helpers for the GPU tests (kernels_cuda_test): the skip without a device and a device
// copy of a host vector.
#ifndef BLOCKSERVE_KERNELS_CUDA_CUDA_TEST_UTIL_H_
#define BLOCKSERVE_KERNELS_CUDA_CUDA_TEST_UTIL_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_device.h"

// Skips the current test, with the CUDA error as the reason, where there is no usable device.
#define SKIP_WITHOUT_DEVICE()                                                                  \
  do {                                                                                         \
    const ::blockserve::cuda::CudaAvailability avail = ::blockserve::cuda::QueryCudaDevices(); \
    if (avail.device_count == 0) GTEST_SKIP() << "no CUDA device: " << avail.reason;           \
  } while (0)

namespace blockserve::cuda::test_util {

// A device copy of a host vector, freed on destruction.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(const std::vector<T>& host) : n_(host.size()) {
    ok_ = cudaMalloc(&ptr_, n_ * sizeof(T) + 1) == cudaSuccess &&
          cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess;
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  bool ok() const { return ok_; }
  T* get() const { return ptr_; }
  std::vector<T> ToHost() const {
    std::vector<T> host(n_);
    EXPECT_EQ(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }

 private:
  T* ptr_ = nullptr;
  size_t n_;
  bool ok_ = false;
};

}  // namespace blockserve::cuda::test_util

#endif  // BLOCKSERVE_KERNELS_CUDA_CUDA_TEST_UTIL_H_
