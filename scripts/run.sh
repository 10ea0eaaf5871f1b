#!/usr/bin/env bash
# The README's main command. Today: installs dependencies, builds, and runs the self-check
# (SIMD kernels, safetensors, config, tokenizer, CUDA availability). Later issues extend it
# to train the default model if missing, start the server and stream a generation.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/install-deps.sh
bash scripts/build.sh
"$root/build/bin/blockserve-selfcheck"
