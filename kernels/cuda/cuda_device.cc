// CUDA device discovery and error conversion.
#include "kernels/cuda/cuda_device.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace blockserve::cuda {

absl::Status CudaStatus(cudaError_t err, absl::string_view what) {
  if (err == cudaSuccess) return absl::OkStatus();
  const std::string message = absl::StrCat(what, ": CUDA error ", static_cast<int>(err), " (",
                                           cudaGetErrorName(err), "): ", cudaGetErrorString(err));
  switch (err) {
    case cudaErrorMemoryAllocation: return absl::ResourceExhaustedError(message);
    case cudaErrorInvalidValue: return absl::InvalidArgumentError(message);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver: return absl::FailedPreconditionError(message);
    default: return absl::InternalError(message);
  }
}

CudaAvailability QueryCudaDevices() {
  CudaAvailability out;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky error so later calls start clean
    out.reason = std::string(CudaStatus(err, "cudaGetDeviceCount").message());
    return out;
  }
  if (count <= 0) {
    out.reason = "cudaGetDeviceCount found no CUDA device";
    return out;
  }
  out.device_count = count;
  return out;
}

absl::Status DescribeDevice(int index, std::string* description) {
  cudaDeviceProp prop;
  const absl::Status st = CudaStatus(cudaGetDeviceProperties(&prop, index), "cudaGetDeviceProperties");
  if (!st.ok()) return st;
  *description = absl::StrFormat("%s, sm_%d%d, %.1f GiB", prop.name, prop.major, prop.minor,
                                 static_cast<double>(prop.totalGlobalMem) / (1 << 30));
  return absl::OkStatus();
}

}  // namespace blockserve::cuda
