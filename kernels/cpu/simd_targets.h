// Which Highway SIMD targets this binary holds, which this CPU supports, and test helpers.
#ifndef BLOCKSERVE_KERNELS_CPU_SIMD_TARGETS_H_
#define BLOCKSERVE_KERNELS_CPU_SIMD_TARGETS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace blockserve::cpu {

struct SimdTarget {
  int64_t bits;      // Highway's target bit
  std::string name;  // "AVX2", "AVX3", "SSE4", "EMU128", ...
};

// Targets compiled into this binary that this CPU can run, best first.
std::vector<SimdTarget> UsableSimdTargets();
// The target runtime dispatch picks on this CPU.
std::string BestSimdTargetName();
// Tests only: restrict dispatch to `target` (0 restores every target). Not thread-safe.
void ForceSimdTargetForTest(int64_t target);

}  // namespace blockserve::cpu

#endif  // BLOCKSERVE_KERNELS_CPU_SIMD_TARGETS_H_
