#!/usr/bin/env bash
# Installs every Debian package blockserve's build, tests and trainer need. Idempotent.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates
  # serving stack
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev
  # tokenizer
  libsentencepiece-dev sentencepiece
  # kernels
  libhwy-dev libopenblas-dev libopenblas0-pthread
  # tests and benchmarks
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  # formats
  nlohmann-json3-dev
  # trainer
  libtorch-dev libgloo-dev gnuplot-nox
  # corpora (KJV bible; the Python standard library sources ship with python3)
  bible-kjv python3
  # the TLS test makes a self-signed certificate
  openssl
  # the Python client test (stubs generated from proto/ with protoc and grpc_python_plugin)
  python3-grpcio python3-protobuf
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
