#!/usr/bin/env bash
# GPU smoke test and throughput, in two halves (the GPU machine has no Rust toolchain):
#
#   cluster/gpu-smoke.sh build   # here: a CUDA-enabled ras linked against the PyPI torch
#                                #   2.11.0 wheel's libraries (libtorch_cuda.so), --features nccl,
#                                #   into target-gpu/; plus the demo dataset
#   cluster/gpu-smoke.sh run     # on the GPU machine (torch 2.11.0+cu130 in its python3):
#                                #   1. NCCL world-size-1 training smoke test (RAS_COLLECTIVE=nccl)
#                                #   2. `ras bench train-step` at the paper's shapes on the GPU
#
# Carry target-gpu/release/ras and out/demo-data to the GPU machine (device tool: carry
# ["target-gpu/release/ras", "out/demo-data"]). Recipe: ../shared/recipes/README.md, "GPU builds".
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
build)
  W="$HOME/.cache/ras-torch-cuda-2.11.0"
  LIBTORCH_DIR="$W" bash scripts/install-libtorch.sh cuda
  # Without --no-as-needed the linker drops libtorch_cuda.so and CUDA silently stays off;
  # the CUDA libraries it needs exist only on the GPU machine: allow them unresolved here.
  LIBTORCH="$W" LIBTORCH_BYPASS_VERSION_CHECK=1 CARGO_TARGET_DIR=target-gpu \
    RUSTFLAGS="-C link-arg=-Wl,--no-as-needed -C link-arg=-ltorch_cuda -C link-arg=-Wl,--allow-shlib-undefined" \
    cargo build --release --features nccl
  [ -d out/demo-data ] || target/release/ras data synth --out out/demo-data --classes 4 --seed 0
  ls -la target-gpu/release/ras
  ;;
run)
  TL=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
  NL=$(python3 -c 'import nvidia.nccl,os;print(os.path.dirname(nvidia.nccl.__file__))' 2>/dev/null || true)/lib
  export LD_LIBRARY_PATH="$TL:$NL:${LD_LIBRARY_PATH:-}"
  B=target-gpu/release/ras
  nvidia-smi -L
  echo "== NCCL world-size-1 training smoke test"
  RAS_COLLECTIVE=nccl OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    mpirun -np 1 "$B" worker configs/demo.toml --set train.device=cuda --set train.epochs=20 --set store=file:///tmp/gpu-store
  cat /tmp/gpu-store/runs/*/env.json
  echo "== throughput at the paper's shapes"
  "$B" bench train-step --no-pytorch --steps 20 --epoch-images 256
  ;;
*) echo "usage: $0 build|run" >&2; exit 2 ;;
esac
