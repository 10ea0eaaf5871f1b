// The CUDA kernel sources compiled as host C++ on the SIMT harness (BLOCKSERVE_SIMT is defined by
// the bs_simt target), for kernels_cuda_simt_test. Every .cu of bs_kernels_cuda that holds a
// kernel is included here, so that CI without a GPU runs each kernel body.
// Never link this together with bs_kernels_cuda: both define the same launchers.
#ifndef BLOCKSERVE_SIMT
#error "kernels_simt.cc must be compiled with BLOCKSERVE_SIMT (link bs_simt)"
#endif

#include "kernels/cuda/rms_norm.cu"
#include "kernels/cuda/sampling.cu"
#include "kernels/cuda/lsh_hash.cu"
#include "kernels/cuda/decode_attention.cu"
#include "kernels/cuda/add_rms_norm.cu"
#include "kernels/cuda/gather_rows.cu"
#include "kernels/cuda/lsh_window_attention.cu"
#include "kernels/cuda/gates.cu"
#include "kernels/cuda/bf16_convert.cu"
