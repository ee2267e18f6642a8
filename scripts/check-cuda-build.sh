#!/usr/bin/env bash
# The CUDA build, checked on a machine without a GPU (make test runs it after
# `make build-cuda`). What it proves, and what still needs a GPU: README.md, "GPU".
#   1. target/release/ras-cuda NEEDs libtorch_cuda.so (the linker kept it: without
#      --no-as-needed it is silently dropped and libtorch has no CUDA at all);
#   2. it starts with the torch 2.11.0 wheel's libraries of .venv-ref (libtorch_cuda.so and
#      the CUDA stand-ins scripts/cuda-stubs.py made, which abort if ever called), and
#      `--version` reports libtorch_cuda.so mapped into the process;
#   3. with no GPU it trains on the CPU (two steps of a tiny model) without calling into CUDA;
#   4. the plain `ras` says it is CPU only, so the two cannot be mistaken for each other.
set -euo pipefail
cd "$(dirname "$0")/.."
CUDA_BIN=target/release/ras-cuda CPU_BIN=target/release/ras
fail() { echo "check-cuda-build: FAIL: $*" >&2; exit 1; }
[ -x "$CUDA_BIN" ] || fail "$CUDA_BIN missing: run make build-cuda"
needed=$(readelf -d "$CUDA_BIN" | awk '/\(NEEDED\)/ {print $NF}' | tr -d '[]')
grep -qx libtorch_cuda.so <<<"$needed" || fail "$CUDA_BIN does not NEED libtorch_cuda.so; it NEEDs: $(echo $needed)"
SITE=$(.venv-ref/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
version=$(LD_LIBRARY_PATH="$SITE/torch/lib:$SITE/nvidia/cu13/lib" "$CUDA_BIN" --version) \
  || fail "$CUDA_BIN --version did not start with LD_LIBRARY_PATH=$SITE/torch/lib:$SITE/nvidia/cu13/lib"
grep -q "CUDA backend: libtorch_cuda.so loaded" <<<"$version" || fail "$CUDA_BIN --version: $version"
# Loaded but with no GPU: the default device is the CPU, and CPU training never calls
# into a CUDA stand-in (one would abort the process).
LD_LIBRARY_PATH="$SITE/torch/lib:$SITE/nvidia/cu13/lib" "$CUDA_BIN" --quiet bench train-step --no-pytorch \
  --batch 2 --hidden-dim 32 --encoder-layers 1 --decoder-layers 1 --steps 2 --epoch-images 0 \
  || fail "$CUDA_BIN could not train on the CPU"
cpu=$("$CPU_BIN" --version)
grep -q "CPU only" <<<"$cpu" || fail "$CPU_BIN --version: $cpu"
echo "check-cuda-build: ok: $CUDA_BIN NEEDs libtorch_cuda.so and starts with it loaded ($version)"
