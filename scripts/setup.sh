#!/usr/bin/env bash
# Installs what building and running ras needs, only what is missing (idempotent).
# Works as root on a bare Debian 12 with only the package registries reachable.
#   - Debian packages: a C/C++ toolchain and pkg-config (torch-sys builds a C++ wrapper)
#   - libtorch 2.11.0 (CPU) from the PyPI torch wheel (pytorch.org is not reachable)
#   - .cargo/config.toml pointing cargo at it (generated: it holds an absolute path)
set -euo pipefail
cd "$(dirname "$0")/.."
LIBTORCH_DIR="${LIBTORCH:-$HOME/.cache/libtorch-2.11.0-cpu}"

need=()
# openmpi + libclang: the `mpi` crate (bindgen) and mpirun for data-parallel ranks.
# libturbojpeg0-dev: the `turbojpeg` crate (JPEGs decoded as PIL and OpenCV decode them).
# patchelf: `make dist` sets the bundle's RUNPATH with it.
for pkg in g++ pkg-config python3 python3-pip ca-certificates openmpi-bin libopenmpi-dev libclang-dev libturbojpeg0-dev patchelf; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
# python3/pip may come from elsewhere (pyenv): only ask apt when the commands are missing.
if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
  need=("${need[@]/python3}"); need=("${need[@]/python3-pip}")
fi
need=($(printf '%s\n' "${need[@]}" | grep -v '^$' || true))
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }

LIBTORCH_DIR="$LIBTORCH_DIR" bash scripts/install-libtorch.sh

mkdir -p .cargo
# TURBOJPEG_*: Debian's libturbojpeg.a is linked in, so nodes need no libturbojpeg (make
# dist). Named explicitly: pkg-config links libraries of the system folders dynamically.
tj_libdir=$(pkg-config --variable=libdir libturbojpeg)
want="[env]
LIBTORCH = \"$LIBTORCH_DIR\"
TURBOJPEG_SOURCE = \"explicit\"
TURBOJPEG_LIB_DIR = \"$tj_libdir\"
TURBOJPEG_STATIC = \"1\""
if [ ! -f .cargo/config.toml ] || [ "$(cat .cargo/config.toml)" != "$want" ]; then
  printf '%s\n' "$want" > .cargo/config.toml
  echo "setup: wrote .cargo/config.toml (LIBTORCH=$LIBTORCH_DIR)"
fi

