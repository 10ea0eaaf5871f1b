// CUDA device discovery and cudaError_t -> absl::Status conversion (host code, no kernels).
#ifndef BLOCKSERVE_KERNELS_CUDA_CUDA_DEVICE_H_
#define BLOCKSERVE_KERNELS_CUDA_CUDA_DEVICE_H_

#include <cuda_runtime.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace blockserve::cuda {

// OK for cudaSuccess; otherwise an error naming `what` and CUDA's message.
absl::Status CudaStatus(cudaError_t err, absl::string_view what);

// What cudaGetDeviceCount says. Any error (no driver, "driver version is insufficient",
// no device) counts as "no device": count 0 and the reason in `reason`.
struct CudaAvailability {
  int device_count = 0;
  std::string reason;  // empty when device_count > 0
};
CudaAvailability QueryCudaDevices();

// A one-line description of device `index` ("NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB").
absl::Status DescribeDevice(int index, std::string* description);

}  // namespace blockserve::cuda

#endif  // BLOCKSERVE_KERNELS_CUDA_CUDA_DEVICE_H_
