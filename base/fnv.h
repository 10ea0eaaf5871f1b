// FNV-1a 64-bit hashing: fingerprints and checksums of model files and session snapshots.
#ifndef BLOCKSERVE_BASE_FNV_H_
#define BLOCKSERVE_BASE_FNV_H_

#include <cstddef>
#include <cstdint>

namespace blockserve {

inline constexpr uint64_t kFnvOffset = 1469598103934665603ull;

// Continues hash `h` over `n` bytes at `data` (start with kFnvOffset). Not cryptographic:
// it detects accidental damage, not tampering.
inline uint64_t Fnv1a(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace blockserve

#endif  // BLOCKSERVE_BASE_FNV_H_
