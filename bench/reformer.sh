#!/usr/bin/env bash
# Reformer (issue 7), by hand; results in docs/results.md and docs/reformer-decoding.md.
#  1. Decode time per token at 4K and 64K tokens of context (synthetic 4.8M-parameter Reformer,
#     131072 positions), with the state bytes at each context; decode batch 1/8 and prefill.
#  2. Three Reformers trained on KJV with one config but different attention: LSH/local
#     alternating, LSH only, and full attention (local chunks as long as the segment); each
#     evaluated on the held-out books through the full forward (the trainer's protocol) and
#     through the cached decode path (only each segment's first chunk prefilled).
# About 45 minutes on 2 cores (the training runs dominate; trained models are reused from
# $MODELS if present).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/build.sh -- blockserve-bench blockserve-train blockserve-eval >/dev/null
bin="${BUILD_DIR:-$root/build}/bin"
models="${MODELS:-/tmp/blockserve-reformer-kjv}"
mkdir -p "$models"

echo "== 1. decode at 4K and 64K tokens of context (synthetic reformer-small)"
"$bin/blockserve-bench" --synthetic=reformer-small --batches=1,8 --steps=100 --prefill_tokens=4096 \
  --contexts=4096,65536,4096 --bandwidth_mib=256

echo "== 2. KJV: LSH vs full attention, full forward vs cached decode"
tokenizer="$models/tokenizer.model"
# One tokenizer for all three runs: trained by the first, reused by the others.
common=(--model=reformer --corpus=kjv --vocab=2000 --d_model=128 --layers=4 --heads=4 --head_dim=32 --ffn=512
        --segment=256 --hashes=2 --max_positions=4096 --batch=8 --steps=500 --warmup=50 --lr=2e-3
        --reversible=false --log_every=100 --threads=2 --eval_every=250 --eval_max_tokens=20000 --plot=false)
train() {  # name, extra flags...
  local name="$1"; shift
  if [ -f "$models/$name/config.json" ] && grep -q heldout_bits_per_token "$models/$name/config.json"; then
    echo "($name: reusing $models/$name)"
  else
    local tok_flag=()
    [ -f "$tokenizer" ] && tok_flag=(--tokenizer="$tokenizer")
    "$bin/blockserve-train" --out="$models/$name" "${common[@]}" "${tok_flag[@]}" "$@" | grep -E "^step|final"
    [ -f "$tokenizer" ] || cp "$models/$name/tokenizer.model" "$tokenizer"
  fi
}
train mixed --attn_layers=local,lsh --lsh_chunk=32 --local_chunk=32
train lsh --attn_layers=lsh --lsh_chunk=32
train full --attn_layers=local --local_chunk=256

heldout=$(ls "$models/mixed/heldout/"*.txt | paste -sd, -)
printf "\n%-8s %16s %18s %18s %10s\n" model "trainer eval" "engine, full fwd" "engine, cached" "cached-full"
for name in mixed lsh full; do
  trainer=$(python3 -c "import json,sys; print('%.4f' % json.load(open(sys.argv[1]))['training']['heldout_bits_per_token'])" \
            "$models/$name/config.json")
  full=$("$bin/blockserve-eval" --model="$models/$name" --text="$heldout" --segment=256 | sed 's/.*bits_per_token=\([0-9.]*\).*/\1/')
  cached=$("$bin/blockserve-eval" --model="$models/$name" --text="$heldout" --segment=256 --prefill=32 |
           sed 's/.*bits_per_token=\([0-9.]*\).*/\1/')
  printf "%-8s %16s %18.4f %18.4f %+10.4f\n" "$name" "$trainer" "$full" "$cached" \
    "$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$full" "$cached")"
done
