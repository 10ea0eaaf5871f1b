#!/usr/bin/env bash
# Serving benchmark over loopback (blockserve-server + blockserve-loadgen):
#   1. aggregate decode throughput of one-off requests (16-token prompt, 128 new tokens) at
#      1, 8, 32 and 64 concurrent clients;
#   2. inter-token latency of 8 streams without and with a concurrent 131072-token prefill
#      (one Generate with max_new_tokens 1), and the ratio of their p99s.
# The server runs on a free port and is stopped at the end. About a minute on the default model.
#
# Env: MODEL (default ~/.cache/blockserve/models/kjv-brt), BUILD_DIR (build/), SKIP_BUILD (0: build
#      first), SERVER_FLAGS (extra server flags), BG_TOKENS (131072), BG_VIA (generate|append),
#      ITL_SECONDS (20: length of each part-2 run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${BUILD_DIR:-$root/build}"
bin="$build/bin"
model="${MODEL:-$HOME/.cache/blockserve/models/kjv-brt}"
bg_tokens="${BG_TOKENS:-131072}"
bg_via="${BG_VIA:-generate}"
itl_seconds="${ITL_SECONDS:-20}"

if [ ! -f "$model/config.json" ]; then
  echo "no model in $model: run scripts/run.sh first (it trains the default model), or set MODEL=DIR" >&2
  exit 1
fi
if [ "${SKIP_BUILD:-0}" != "1" ]; then
  echo "building blockserve-server, blockserve-loadgen, blockserve-cli into $build ..."
  bash scripts/build.sh -- blockserve-server blockserve-loadgen blockserve-cli >/dev/null
fi

tmp="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    { kill -TERM "$server_pid"; wait "$server_pid"; } || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
# shellcheck disable=SC2086  # SERVER_FLAGS is a list of flags
"$bin/blockserve-server" --model="$model" --port=0 --port_file="$tmp/port" --metrics_port=0 \
  ${SERVER_FLAGS:-} >"$tmp/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do
  [ -s "$tmp/port" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the server exited:" >&2
    cat "$tmp/server.log" >&2
    exit 1
  fi
  sleep 0.1
done
[ -s "$tmp/port" ] || { echo "the server did not start in 60 s" >&2; exit 1; }
server="localhost:$(cat "$tmp/port")"
loadgen=("$bin/blockserve-loadgen" --server="$server")
echo "server: $server, model $model"
grep -E "model .*parameters|engine:" "$tmp/server.log" | sed 's/^[^]]*] /  /' || true

# field JSON_FILE EXPR: a number from the loadgen's JSON ("-" when absent or null).
field() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
try:
    value = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    value = None
for key in sys.argv[2].split("."):
    value = value.get(key) if isinstance(value, dict) else None
print("-" if value is None else value)
EOF
}

echo
echo "== 1/2 aggregate decode throughput: one-off requests, 16-token prompts, 128 new tokens each"
printf "%11s %8s %7s %9s %10s %10s %10s %10s %10s %10s\n" concurrency requests failed req/s \
  tok/s "TTFT p50" "TTFT p99" "ITL p50" "ITL p99" "E2E p50"
printf "%11s %8s %7s %9s %10s %10s %10s %10s %10s %10s\n" "" "" "" "" "" ms ms ms ms ms
for n in 1 8 32 64; do
  out="$tmp/decode_$n.json"
  "${loadgen[@]}" --concurrency="$n" --requests=$((4 * n)) --warmup_requests="$n" \
    --max_tokens=128 --prompt_tokens=16 --sessions=none --json >"$out" || true
  printf "%11s %8s %7s %9s %10s %10s %10s %10s %10s %10s\n" "$n" \
    "$(field "$out" requests_ok)" "$(field "$out" requests_failed)" \
    "$(field "$out" request_throughput)" "$(field "$out" output_token_throughput)" \
    "$(field "$out" ttft_ms.p50)" "$(field "$out" ttft_ms.p99)" "$(field "$out" itl_ms.p50)" \
    "$(field "$out" itl_ms.p99)" "$(field "$out" e2e_ms.p50)"
done

echo
echo "== 2/2 inter-token latency of 8 streams (128 new tokens each, ${itl_seconds} s runs)," \
  "without and with a concurrent ${bg_tokens}-token prefill (via $bg_via)"
base="$tmp/itl_base.json"
with="$tmp/itl_bg.json"
common=(--concurrency=8 --duration_seconds="$itl_seconds" --warmup_requests=8 --max_tokens=128
  --prompt_tokens=16 --sessions=none --json)
"${loadgen[@]}" "${common[@]}" >"$base" || true
"${loadgen[@]}" "${common[@]}" --background_prefill_tokens="$bg_tokens" \
  --background_via="$bg_via" --background_delay_seconds=2 >"$with" || true
printf "%-48s %9s %9s %9s %9s %8s\n" "(ms)" p50 p90 p99 max samples
row() {
  printf "%-48s %9s %9s %9s %9s %8s\n" "$1" "$(field "$2" "$3.p50")" "$(field "$2" "$3.p90")" \
    "$(field "$2" "$3.p99")" "$(field "$2" "$3.max")" "$(field "$2" "$3.n")"
}
row "ITL without background prefill" "$base" itl_ms
row "ITL with it: whole run" "$with" itl_ms
row "ITL with it: tokens that arrived during it" "$with" background.itl_ms_during
row "ITL with it: tokens that arrived outside it" "$with" background.itl_ms_outside
row "TTFT without background prefill" "$base" ttft_ms
row "TTFT with it: whole run" "$with" ttft_ms
echo "background prefill: $(field "$with" background.tokens_processed) tokens in" \
  "$(field "$with" background.duration_s) s ($(field "$with" background.tokens_per_s) tok/s)," \
  "status $(field "$with" background.code)"
if [ "$(field "$with" background.outlasted_load)" = "True" ]; then
  echo "warning: the prefill outlasted the load; the streams covered only part of it (raise ITL_SECONDS)"
fi
python3 - "$base" "$with" <<'EOF'
import json, sys
try:
    base = json.load(open(sys.argv[1]))["itl_ms"]["p99"]
    bg = json.load(open(sys.argv[2])).get("background", {})
except (OSError, ValueError, KeyError):
    base, bg = None, {}
during = (bg.get("itl_ms_during") or {}).get("p99")
if base and during:
    print(f"p99 ITL: {base:.3f} ms without, {during:.3f} ms during the prefill: "
          f"ratio {during / base:.2f}x")
else:
    print("p99 ITL ratio: not available (a run failed or no token arrived during the prefill)")
EOF
