#!/usr/bin/env bash
# Trains xl, slide (+1 layer) and brt (Rec:fixed:skip) at equal step counts and equal tokens per
# step on KJV and on the Python standard library, and prints a table in the shape of Table 1 of
# the BRT paper (held-out bits/token, relative step time with slide = 1.00).
# Usage: bench/paper_table.sh [corpus...]     (default: kjv python)
# Env: STEPS (400), OUT (bench/out/paper_table), THREADS (2), BUILD_DIR (build)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
train="${BUILD_DIR:-$root/build}/bin/blockserve-train"
out="${OUT:-$root/bench/out/paper_table}"
steps="${STEPS:-400}"
threads="${THREADS:-2}"
corpora=("$@")
[ ${#corpora[@]} -gt 0 ] || corpora=(kjv python)
[ -x "$train" ] || { echo "build first: bash scripts/build.sh" >&2; exit 1; }
mkdir -p "$out"

# Scaled-down paper setup: W = 64 (paper 512), N = 8W (paper 4096 = 8 x 512), d = 128, 4 layers
# (paper 12), recurrent layer at L-3 (paper layer 9 of 12), S = 64 states. Tokens per step are
# equal for every model (paper: 4096 per device): xl reads 8x more slots of W tokens.
common="--vocab=2000 --d_model=128 --heads=4 --head_dim=32 --ffn=512 --window=64 --states=64
        --steps=$steps --warmup=40 --lr=2e-3 --schedule=cosine --heldout=0.1 --seed=1
        --threads=$threads --log_every=50 --eval_max_tokens=20000"
declare -A extra=(
  [xl]="--model=xl --layers=4 --segment=64 --batch=32"
  [slide]="--model=slide --layers=5 --segment=512 --batch=4"
  [brt]="--model=brt --layers=4 --segment=512 --batch=4 --recurrent_layers=1 --gate=fixed --variant=skip"
)
names=(xl slide brt)
declare -A label=([xl]="XL:W (segment = window)" [slide]="Slide:L+1" [brt]="Rec:fixed:skip")

for corpus in "${corpora[@]}"; do
  for m in "${names[@]}"; do
    dir="$out/$corpus-$m"
    if [ -f "$dir/model.safetensors" ] && grep -q '"final":true' "$dir/metrics.jsonl" 2>/dev/null; then
      echo "== $corpus / $m: done already ($dir)"; continue
    fi
    rm -rf "$dir"
    tok=""
    [ -f "$out/$corpus-tokenizer.model" ] && tok="--tokenizer=$out/$corpus-tokenizer.model"
    echo "== $corpus / $m"
    # shellcheck disable=SC2086
    "$train" --out="$dir" --corpus="$corpus" $common ${extra[$m]} $tok | tee "$dir.log"
    [ -f "$out/$corpus-tokenizer.model" ] || cp "$dir/tokenizer.model" "$out/$corpus-tokenizer.model"
  done
done

python3 - "$out" "$steps" "${corpora[@]}" <<'PY'
import json, os, sys
out, steps, corpora = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
names = ["xl", "slide", "brt"]
label = {"xl": "XL:64 (segment = window)", "slide": "Slide:5L (+1 layer)", "brt": "Rec:fixed:skip (4L)"}
lines = []
res = {}
for c in corpora:
    for m in names:
        d = f"{out}/{c}-{m}"
        rows = [json.loads(l) for l in open(f"{d}/metrics.jsonl")]
        final = [r for r in rows if r.get("final")][-1]
        cfg = json.load(open(f"{d}/config.json"))
        params = None
        res[(c, m)] = (final["eval_bits_per_token"], final["seconds_per_step"], cfg)
lines.append("| model | " + " | ".join(f"{c} bits/token" for c in corpora) + " | " +
             " | ".join(f"{c} s/step" for c in corpora) + " | rel. step time |")
lines.append("|---" * (2 + 2 * len(corpora)) + "|")
for m in names:
    rel = [res[(c, m)][1] / res[(c, "slide")][1] for c in corpora]
    lines.append(f"| {label[m]} | " + " | ".join(f"{res[(c, m)][0]:.3f}" for c in corpora) + " | " +
                 " | ".join(f"{res[(c, m)][1]:.3f}" for c in corpora) + f" | {sum(rel)/len(rel):.2f} |")
table = "\n".join(lines)
print(table)
open(f"{out}/table.md", "w").write(table + "\n")
PY

# One plot per corpus with the three training curves.
if command -v gnuplot >/dev/null; then
  for corpus in "${corpora[@]}"; do
    for m in "${names[@]}"; do
      python3 -c "
import json,sys
for l in open('$out/$corpus-$m/metrics.jsonl'):
    r=json.loads(l)
    if 'bits_per_token' in r: print(r['step'], r['bits_per_token'])
" > "$out/$corpus-$m.dat"
    done
    gnuplot <<GP
set terminal png size 900,560
set output '$out/paper_table_$corpus.png'
set title 'training bits/token, $corpus'
set xlabel 'step'; set ylabel 'bits/token'; set grid
plot '$out/$corpus-xl.dat' using 1:2 smooth bezier title 'xl', \
     '$out/$corpus-slide.dat' using 1:2 smooth bezier title 'slide (+1 layer)', \
     '$out/$corpus-brt.dat' using 1:2 smooth bezier title 'brt fixed:skip'
GP
  done
fi
echo "table: $out/table.md"
