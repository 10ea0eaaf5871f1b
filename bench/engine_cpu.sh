#!/usr/bin/env bash
# CPU engine speed (issue 4): decode batch 1/8/32 and prefill of a ~50M-parameter synthetic BRT
# in f32 and bf16 beside the measured memory-bandwidth floor, and decode time per token at 1K
# and 1M tokens of context on a tiny model. Results: docs/results.md. About 3 minutes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/build.sh -- blockserve-bench >/dev/null
bin="${BUILD_DIR:-$root/build}/bin/blockserve-bench"
echo "== 50M parameters, f32 weights"
"$bin" --synthetic=50m --dtype=f32 --steps=64
echo "== 50M parameters, bf16 weights"
"$bin" --synthetic=50m --dtype=bf16 --steps=64
echo "== constant state: decode at 1K and 1M tokens of context (tiny model)"
"$bin" --synthetic=tiny --batches=1 --steps=2000 --prefill_tokens=0 --contexts=1024,1000000,1024 --bandwidth_mib=64
