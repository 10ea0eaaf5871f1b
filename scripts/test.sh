#!/usr/bin/env bash
# The README's test command: installs dependencies, builds everything (CUDA sources too when
# nvcc exists), runs every ctest test, then rebuilds the base, models, kernels/cpu and engine
# unit tests with ASan+UBSan and runs them there, and the threaded engine tests under
# ThreadSanitizer. Exits non-zero on any failure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
start=$(date +%s)
echo "== dependencies"
bash scripts/install-deps.sh
echo "== build"
bash scripts/build.sh
echo "== tests (ctest)"
ctest --test-dir build --output-on-failure --timeout 900 -j "${JOBS:-$(nproc)}" "$@"
echo "== sanitizers: base, models, kernels/cpu, the CUDA kernels on the SIMT harness and engine unit tests under ASan+UBSan"
BUILD_DIR="$root/build-asan" BUILD_TYPE=Debug CUDA=OFF bash scripts/build.sh \
  -DBLOCKSERVE_SANITIZE="address;undefined" -DBLOCKSERVE_BUILD_TRAINER=OFF -DBLOCKSERVE_BUILD_SERVER=OFF \
  -- base_tensor_test base_file_io_test base_safetensors_test base_utf8_test base_thread_pool_test \
           base_status_logging_test base_tokenizer_test models_config_test models_model_dir_test \
           kernels_cpu_rms_norm_test kernels_cpu_matvec_test kernels_cpu_gemm_test kernels_cpu_attention_test \
           kernels_cpu_elementwise_test kernels_cuda_simt_test kernels_cuda_gemm_simt_test models_brt_runner_test models_reformer_runner_test engine_sampler_test engine_output_processor_test \
           engine_engine_test engine_session_store_test engine_scheduler_test base_streaming_encoder_test
ctest --test-dir build-asan --output-on-failure --timeout 900 -j "${JOBS:-$(nproc)}" \
  -R "^(base_|models_|kernels_cpu_|kernels_cuda_(gemm_)?simt_|engine_)"
echo "== ThreadSanitizer: the engine loop, scheduler, session store and thread pool"
BUILD_DIR="$root/build-tsan" BUILD_TYPE=RelWithDebInfo CUDA=OFF bash scripts/build.sh \
  -DBLOCKSERVE_SANITIZE=thread -DBLOCKSERVE_BUILD_TRAINER=OFF -DBLOCKSERVE_BUILD_SERVER=OFF \
  -- engine_engine_test engine_scheduler_test engine_session_store_test base_thread_pool_test
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ctest --test-dir build-tsan --output-on-failure \
  --timeout 900 -j "${JOBS:-$(nproc)}" -R "^(engine_engine|engine_scheduler|engine_session_store|base_thread_pool)_test$"
echo "== all tests passed in $(( $(date +%s) - start )) s"
