// Enumeration of Highway targets for dispatch tests and the self-check.
#include "kernels/cpu/simd_targets.h"

#include "hwy/targets.h"

namespace blockserve::cpu {

std::vector<SimdTarget> UsableSimdTargets() {
  std::vector<SimdTarget> out;
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    out.push_back({target, hwy::TargetName(target)});
  }
  return out;
}

std::string BestSimdTargetName() {
  const std::vector<SimdTarget> targets = UsableSimdTargets();
  return targets.empty() ? "none" : targets.front().name;
}

void ForceSimdTargetForTest(int64_t target) { hwy::SetSupportedTargetsForTest(target); }

}  // namespace blockserve::cpu
