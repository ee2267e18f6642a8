#!/usr/bin/env bash
# A ras that brings its own libraries (`make dist`): dist/ras-<version>/
#   bin/ras              the binary, its RUNPATH set to $ORIGIN/../lib (patchelf)
#   lib/                 every library ldd resolves outside the system folders: libtorch's
#                        (libtorch_cpu.so, libc10.so, libgomp, the CUDA runtime stubs it
#                        needs), found with ldd, not a fixed list
#   SYSTEM-LIBS.txt      what the nodes must provide themselves (glibc, libstdc++, and
#                        OpenMPI's libmpi.so.40: `srun --mpi=pmix` starts ranks with the
#                        cluster's PMIx, so the cluster's OpenMPI 4.x/5.x is the one to use)
#
# Copy the folder anywhere the nodes see (a shared filesystem) and run bin/ras from there:
# no module, no LD_LIBRARY_PATH. `ras sweep` submits the path of the ras that runs it, so
# run the sweep with the bundle's ras too.
#
#   scripts/dist.sh [BIN]       bundle BIN (default target/release/ras), then check it
#   scripts/dist.sh --check DIR check an existing bundle only
# Env: DIST_DIR (dist), BUNDLE_MPI=1 also copies libmpi.so.40 and the OpenMPI/PMIx/hwloc/
# libevent libraries it loads, for a machine with no OpenMPI at all: the binary then starts
# and runs single-process work (train, bench, eval), but MPI_Init still needs an OpenMPI
# install (its plugins), so multi-rank runs do not come with it.
set -euo pipefail
cd "$(dirname "$0")/.."

# Libraries a Linux node is expected to have, whatever else it lacks.
is_system() {
  case "$1" in
    /lib/*|/lib64/*|/usr/lib/*|/usr/lib64/*) return 0 ;;
    *) return 1 ;;
  esac
}
is_mpi_stack() { [[ "$(basename "$1")" =~ ^lib(mpi|open-rte|open-pal|pmix|hwloc|event|udev|ltdl|fabric|ucp|ucs|uct|ucm|psm|ibverbs|rdmacm|nl-|efa|z\.)|^libmunge ]]; }

# check DIR: every library of DIR/bin/ras resolves, each non-system one inside DIR/lib,
# with LD_LIBRARY_PATH unset; then the binary runs.
check() {
  local dir; dir=$(readlink -f "$1"); local bin=$dir/bin/ras bad=0
  echo "== checking $dir"
  echo "RUNPATH: $(readelf -d "$bin" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')"
  local lddout; lddout=$(env -u LD_LIBRARY_PATH ldd "$bin")
  if grep -q "not found" <<<"$lddout"; then echo "FAIL: unresolved:"; grep "not found" <<<"$lddout"; bad=1; fi
  while read -r name path; do
    if is_system "$path"; then continue; fi
    path=$(readlink -f "$path")
    case "$path" in
      "$dir"/lib/*) echo "  in bundle: $name" ;;
      *) echo "FAIL: $name resolves outside the bundle and the system: $path"; bad=1 ;;
    esac
  done < <(awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' <<<"$lddout")
  # torch and mpi libraries, wherever ldd found them.
  echo "torch/mpi libraries as ldd resolves them:"
  grep -E "torch|c10|gomp|cud|mpi" <<<"$lddout" | sed 's/^/  /'
  env -u LD_LIBRARY_PATH "$bin" --version || bad=1
  # Stronger, where a private mount namespace is allowed (root, no container needed): the
  # libtorch it was built against hidden under an empty tmpfs, for this one command only.
  local built=${LIBTORCH:-$HOME/.cache/libtorch-2.11.0-cpu}
  if [ -n "$built" ] && [ -d "$built/lib" ] && unshare -m true 2>/dev/null; then
    local seen
    # shellcheck disable=SC2016 # $1, $2 are the inner shell's
    seen=$(unshare -m bash -c 'mount -t tmpfs none "$1/lib" && env -u LD_LIBRARY_PATH LD_DEBUG=libs "$2" --version 2>&1' _ "$built" "$bin" || true)
    if grep -q "calling init: $dir/bin/../lib/libtorch_cpu.so" <<<"$seen"; then
      echo "  with $built/lib hidden: libtorch_cpu.so loads from the bundle"
    else
      echo "FAIL: with $built/lib hidden, $bin does not load libtorch from the bundle"; bad=1
    fi
  fi
  if [ "$bad" != 0 ]; then echo "FAIL: bundle $dir"; return 1; fi
  echo "PASS: $bin loads only from the bundle and the system"
}

if [ "${1:-}" = "--check" ]; then check "${2:?--check DIR}"; exit; fi

BIN=${1:-target/release/ras}
[ -x "$BIN" ] || { echo "no $BIN: build first (cargo build --release --features nccl; make dist does)" >&2; exit 1; }
command -v patchelf >/dev/null || { echo "patchelf is missing: run scripts/setup.sh (make dist does), or apt-get install patchelf" >&2; exit 1; }
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)
OUT=${DIST_DIR:-dist}/ras-$VERSION
rm -rf "$OUT.partial"; mkdir -p "$OUT.partial/bin" "$OUT.partial/lib"
cp "$BIN" "$OUT.partial/bin/ras"
: > "$OUT.partial/SYSTEM-LIBS.txt"
# ldd lists the whole closure (libraries of libraries), resolved as this machine does.
while read -r name path; do
  if is_system "$path" && ! { [ "${BUNDLE_MPI:-0}" = 1 ] && is_mpi_stack "$path"; }; then
    echo "$name ($path here)" >> "$OUT.partial/SYSTEM-LIBS.txt"
  else
    cp -L "$path" "$OUT.partial/lib/$name"
  fi
done < <(ldd "$BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}')
# The binary looks in ../lib first; the bundled libraries find each other in their own
# folder (libtorch's wheel libraries already say $ORIGIN; the others are set to).
# shellcheck disable=SC2016 # $ORIGIN is for the dynamic linker, not the shell
patchelf --set-rpath '$ORIGIN/../lib' "$OUT.partial/bin/ras"
for f in "$OUT.partial"/lib/*; do
  # shellcheck disable=SC2016
  readelf -d "$f" | grep -q 'R.*PATH.*\$ORIGIN' || patchelf --set-rpath '$ORIGIN' "$f"
done
cat > "$OUT.partial/README.txt" <<EOF
ras $VERSION, built $(date -u +%F) from $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown).
bin/ras finds its libraries in lib/ (RUNPATH \$ORIGIN/../lib); the nodes provide those in
SYSTEM-LIBS.txt. Check a cluster with it: bin/ras doctor --cluster PROFILE
EOF
rm -rf "$OUT"; mv "$OUT.partial" "$OUT"
du -sh "$OUT" "$OUT/lib"/* | sed 's/^/  /'
check "$OUT"
