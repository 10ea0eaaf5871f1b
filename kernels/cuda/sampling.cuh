// Host launcher of the CUDA sampler (one block per sequence): engine/sampler.cc's processing on
// the device. Per-element logic: kernels/cuda/sampling_math.cuh.
#ifndef BLOCKSERVE_KERNELS_CUDA_SAMPLING_CUH_
#define BLOCKSERVE_KERNELS_CUDA_SAMPLING_CUH_

#include <cstdint>

#include "kernels/cuda/cuda_compat.cuh"  // cuda_runtime.h, or the SIMT harness in tests
#include "kernels/cuda/sampling_math.cuh"

namespace blockserve::cuda {

// One sequence's sampling parameters (engine::SamplingParams without seed and logprobs; the
// caller validated the ranges with engine::ValidateSamplingParams).
struct DeviceSamplingParams {
  float temperature = 1.0f;  // 0: argmax (first maximum)
  int top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
};

// Device pointers. For each sequence b (one block each):
//   logits (batch, vocab): in: raw logits; out: the processed logits (penalized, divided by the
//     temperature unless it is 0), as engine::Sampler uses its span as scratch.
//   params (batch,)
//   output_counts (batch, vocab): each token's count in the sequence's output so far; may be null
//     (no output yet).
//   prompt_seen (batch, vocab): nonzero where the token occurs in the prompt; may be null.
//   uniforms (batch,): a uniform number in [0, 1) per sequence (e.g. SamplingUniform(seed, step));
//     the draw is u = uniforms[b] * (mass kept), as std::uniform_real_distribution(0, mass).
//   tokens (batch,): the chosen token ids.
// Order as engine/sampler.cc: penalties -> temperature -> top-k -> top-p -> min-p -> draw, over
// candidates ordered by processed logit (ties: lower id first). Masses are summed in double by a
// block reduction rather than sequentially in sorted order, so the token can differ from the CPU
// sampler's only when u or top_p falls within rounding (~1e-15 relative) of a cumulative
// boundary. Returns the launch error, if any.
cudaError_t LaunchSample(float* logits, int batch, int vocab, const DeviceSamplingParams* params,
                         const int32_t* output_counts, const uint8_t* prompt_seen, const double* uniforms,
                         int32_t* tokens, cudaStream_t stream);

}  // namespace blockserve::cuda

#endif  // BLOCKSERVE_KERNELS_CUDA_SAMPLING_CUH_
