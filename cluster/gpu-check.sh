#!/usr/bin/env bash
# The GPU check of issue 13, in two halves (the GPU machine has no Rust toolchain and no
# network; one H200, torch 2.11.0+cu130 in its python3):
#
#   cluster/gpu-check.sh build   # here: ras-cuda (`make build-cuda`: --features cuda, linked
#                                #   against the PyPI torch 2.11.0 wheel's libtorch_cuda.so),
#                                #   copied to target-gpu/release/ras and stripped of debug info; libmpi and the libraries it
#                                #   loads into target-gpu/mpi-libs/ (only used there if that
#                                #   machine has no OpenMPI: the binary needs libmpi.so.40 to
#                                #   start at all); the demo dataset out/demo-data
#   cluster/gpu-check.sh run     # there: every step under `timeout`, the next one runs when
#                                #   one fails, the whole run within BUDGET_S (450 s); all
#                                #   output and a summary table in $OUT/gpu-check.txt
#
# Device tool: carry ["target-gpu/release/ras", "target-gpu/mpi-libs", "out/demo-data"]
# (64 MiB in all, with the working tree: `build` prints the sizes), timeout_s 540:
#   run(command="bash cluster/gpu-check.sh run", carry=[...], timeout_s=540)
# What each step proves, and what stays unproven: README.md, "GPU".
#
# Env (run): RAS_BIN (target-gpu/release/ras), OUT ($OUT of the device tool, else
# /tmp/gpu-check), BUDGET_S (450). Off a GPU machine `run` still goes through every step
# (they fail), which is how this script itself is checked.
set -uo pipefail
cd "$(dirname "$0")/.."

build() {
  set -e
  # ras-cuda: the same program linked against the torch 2.11.0 wheel's libtorch_cuda.so
  # (the one .venv-ref installs), with the CUDA link flags on that binary only (build.rs):
  # the make target also proves here that it NEEDs libtorch_cuda.so and starts with it.
  make check-cuda-build
  mkdir -p target-gpu/release
  cp target/release/ras-cuda target-gpu/release/ras
  # Debug info is not needed there and counts against the 64 MiB carried.
  strip --strip-debug target-gpu/release/ras
  # libmpi.so.40 and what it loads, minus glibc and the C++ runtime (every machine has
  # those). Enough for the binary to start; MPI_Init would still need an OpenMPI install.
  rm -rf target-gpu/mpi-libs && mkdir -p target-gpu/mpi-libs
  local mpi; mpi=$(ldd target-gpu/release/ras | awk '$1 == "libmpi.so.40" {print $3}')
  { echo "$mpi"; ldd "$mpi" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'; } | while read -r f; do
    case "$(basename "$f")" in
      libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libstdc++*|libgcc_s*) ;;
      *) cp -L "$f" target-gpu/mpi-libs/ ;;
    esac
  done
  [ -d out/demo-data ] || target/release/ras data synth --out out/demo-data --classes 4 --seed 0
  du -sh target-gpu/release/ras target-gpu/mpi-libs out/demo-data
  local total; total=$(du -scm target-gpu/release/ras target-gpu/mpi-libs out/demo-data | tail -1 | cut -f1)
  echo "carried: ${total} MiB (limit 64 MiB with the working tree: $(git ls-files -z | du -cm --files0-from=- 2>/dev/null | tail -1 | cut -f1) MiB tracked)"
  [ "$total" -lt 56 ] || { echo "too big to carry: strip more or carry fewer demo classes" >&2; exit 1; }
}

run() {
  local B=${RAS_BIN:-target-gpu/release/ras}
  local O=${OUT:-/tmp/gpu-check}; mkdir -p "$O"
  local LOG=$O/gpu-check.txt BUDGET=${BUDGET_S:-450} T0=$SECONDS
  : > "$LOG"
  local SUMMARY=()
  log() { echo "$*" | tee -a "$LOG"; }
  # step NAME SECONDS CMD...: runs CMD under timeout (at most what is left of the budget),
  # its output into the log; the next step runs whatever happened.
  step() {
    local name=$1 limit=$2; shift 2
    local left=$((BUDGET - (SECONDS - T0)))
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -lt 5 ]; then SUMMARY+=("$(printf '%-22s %-8s %5s s' "$name" SKIPPED 0)  (budget spent)"); return; fi
    log ""; log "== $name (timeout ${limit}s): $*"
    local t=$SECONDS rc
    timeout --kill-after=5 "$limit" "$@" >>"$LOG" 2>&1; rc=$?
    local st
    case $rc in 0) st=PASS ;; 124|137) st=TIMEOUT ;; *) st="FAIL($rc)" ;; esac
    log "-- $name: $st in $((SECONDS - t)) s"
    SUMMARY+=("$(printf '%-22s %-8s %5s s' "$name" "$st" $((SECONDS - t)))")
  }

  # torch's libraries (libtorch_cuda.so and the CUDA 13 ones next to it through its
  # $ORIGIN RPATH) and NCCL from python3's wheels; the carried libmpi only if none there.
  local TL SITE
  TL=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))' 2>/dev/null)/lib
  SITE=$(dirname "$(dirname "$TL")")
  export LD_LIBRARY_PATH="$TL:$SITE/nvidia/nccl/lib:$SITE/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if ldd "$B" 2>/dev/null | grep -q "libmpi.so.40 => not found"; then
    export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$PWD/target-gpu/mpi-libs"
    log "no OpenMPI here: using the carried target-gpu/mpi-libs (single-process steps only)"
  fi
  log "gpu-check: $(date -u +%FT%TZ) on $(hostname), binary $B ($(du -h "$B" 2>/dev/null | cut -f1)), budget ${BUDGET}s"
  log "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

  step nvidia-smi 20 nvidia-smi
  step libraries 20 bash -c "ldd '$B' | grep -E 'torch|c10|cud|nccl|mpi|not found'; ! ldd '$B' | grep -q 'not found'"
  step version 20 "$B" --version
  # CUDA as libtorch sees it (count, names), then NCCL really called: one rank, its
  # communicator made from its own unique id, ncclAllReduce of one float (must equal the
  # local sum 1) and of 16M floats (checked element by element, timed).
  step nccl-allreduce 60 "$B" --quiet doctor-node --out "$O/doctor" --collective nccl --elements 16777216
  # Training step throughput at the paper's shapes, one process per precision (TF32 is a
  # process-wide switch: once on, it stays on).
  for p in fp32 tf32 bf16; do
    step "train-step-$p" 75 "$B" --quiet bench train-step --device cuda --precision "$p"
  done
  # A whole cached epoch at MVTec's size (3629 train images of 272x14x14 features), 20
  # epochs plus evaluation: samples/s, TFLOP/s, wall time.
  step bench-epoch 150 "$B" --quiet bench epoch --device cuda --images 3629 --epochs 20
  # A real run on the demo dataset on the GPU: backbone features, training, evaluation.
  step train-demo 100 "$B" --quiet train configs/demo.toml --set train.device=cuda --set train.epochs=20 \
    --set dataset.root=out/demo-data --set "store=file://$O/store"
  cp "$O"/store/runs/*/env.json "$O/train-demo-env.json" 2>/dev/null

  log ""; log "== summary ($((SECONDS - T0)) s of ${BUDGET} s)"
  for s in "${SUMMARY[@]}"; do log "$s"; done
  log ""; log "== measured lines"
  grep -hiE "samples/s|images/s|TFLOP|wall|all-reduce|\"gpu_names\"|\"sum\"|large_ms|I-AUROC|mean " "$LOG" | grep -v '^==' | head -60 | tee -a "$O/measured.txt"
  # Exit 0 when every step passed, so a caller sees failure without reading the log.
  ! printf '%s\n' "${SUMMARY[@]}" | grep -qvE ' PASS '
}

case "${1:-}" in
build) build ;;
run) run ;;
*) echo "usage: $0 build|run   (see the comment at the top)" >&2; exit 2 ;;
esac
