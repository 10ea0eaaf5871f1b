#!/usr/bin/env bash
# The README's main command: install dependencies, build, train the default model once if it is
# missing (a small BRT on the King James Bible, cached outside the source tree), start the
# server, stream a generation with the CLI, continue the same session with a second prompt,
# and show the metrics endpoint. The server is stopped at the end (KEEP_SERVER=1 keeps it).
#
# Env: BLOCKSERVE_HOME (cache, default ~/.cache/blockserve), PORT (50051), METRICS_PORT (9464),
#      TRAIN_STEPS (500), KEEP_SERVER (0), MODEL_FAMILY (brt; reformer trains and serves a small
#      KJV Reformer instead, cached in models/kjv-reformer, about 10 minutes to train).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
home="${BLOCKSERVE_HOME:-$HOME/.cache/blockserve}"
family="${MODEL_FAMILY:-brt}"
case "$family" in
  brt)
    model="$home/models/kjv-brt"
    train_args=(--model=brt --d_model=128 --layers=4 --heads=4 --head_dim=32 --ffn=512 --window=64 --segment=512
                --states=64 --batch=4 --lr=2e-3 --warmup=40)
    ;;
  reformer)
    model="$home/models/kjv-reformer"
    train_args=(--model=reformer --attn_layers=local,lsh --lsh_chunk=32 --local_chunk=32 --hashes=2
                --d_model=128 --layers=4 --heads=4 --head_dim=32 --ffn=512 --segment=256 --max_positions=4096
                --batch=8 --lr=2e-3 --warmup=50 --reversible=false)
    ;;
  *) echo "MODEL_FAMILY must be brt or reformer, got '$family'" >&2; exit 2 ;;
esac
port="${PORT:-50051}"
metrics_port="${METRICS_PORT:-9464}"
bin="$root/build/bin"

echo "== 1/5 dependencies"
bash scripts/install-deps.sh
echo "== 2/5 build"
bash scripts/build.sh -- blockserve-train blockserve-server blockserve-cli blockserve-selfcheck
"$bin/blockserve-selfcheck" >/dev/null

echo "== 3/5 default model: $model"
if [ -f "$model/config.json" ] && [ -f "$model/model.safetensors" ] && [ -f "$model/tokenizer.model" ]; then
  echo "present (delete it to retrain)"
else
  # Trained into a temporary directory and moved into place when complete, so an interrupted
  # run never leaves a half-written model behind.
  mkdir -p "$home/models"
  tmp="$model.partial"
  rm -rf "$tmp"
  echo "training a small $family on the KJV Bible (${TRAIN_STEPS:-500} steps; minutes on 2 cores)..."
  "$bin/blockserve-train" --out="$tmp" --corpus=kjv --vocab=2000 "${train_args[@]}" \
    --steps="${TRAIN_STEPS:-500}" --log_every=50 --eval_every=0 --eval_max_tokens=50000 --plot=false
  rm -rf "$tmp/train_state"
  rm -rf "$model"
  mv "$tmp" "$model"
fi

echo "== 4/5 server"
log="$home/server.log"
port_file="$home/server.port"
rm -f "$port_file"
"$bin/blockserve-server" --model="$model" --port="$port" --metrics_port="$metrics_port" \
  --port_file="$port_file" >"$log" 2>&1 &
server_pid=$!
stop_server() {
  if [ "${KEEP_SERVER:-0}" != "1" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" && wait "$server_pid" || true
  fi
}
trap stop_server EXIT
for _ in $(seq 1 300); do
  [ -s "$port_file" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the server exited:"; cat "$log"; exit 1
  fi
  sleep 0.1
done
cli=("$bin/blockserve-cli" --server="localhost:$port")
"${cli[@]}" health
"${cli[@]}" models

echo "== 5/5 a session: generate, then continue it"
session="$("${cli[@]}" session create)"
echo "session $session"
echo "-- prompt 1: In the beginning God created"
"${cli[@]}" generate --session="$session" --max_tokens=60 --temperature=0.8 --top_p=0.95 --seed=1 \
  "In the beginning God created"
echo
echo "-- prompt 2 (same session, its context continues): And the LORD said unto Moses,"
"${cli[@]}" generate --session="$session" --max_tokens=60 --temperature=0.8 --top_p=0.95 --seed=2 \
  " And the LORD said unto Moses,"
echo
"${cli[@]}" session get "$session"
echo
echo "Prometheus metrics: http://localhost:$metrics_port/metrics, for example:"
exec 3<>"/dev/tcp/127.0.0.1/$metrics_port"
printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
grep -E '^blockserve_(generation_tokens_total|requests_total|sessions|session_state_bytes)' <&3 | head -8 || true
exec 3>&-
echo
echo "Server log: $log"
if [ "${KEEP_SERVER:-0}" = "1" ]; then
  echo "The server keeps running (pid $server_pid, port $port)."
else
  echo "Run it yourself: $bin/blockserve-server --model=$model   (then: $bin/blockserve-cli generate \"...\")"
fi
