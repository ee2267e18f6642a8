#!/usr/bin/env bash
# The Python reference environment of the parity tests and `ras bench train-step --pytorch`
# (idempotent; root on a bare Debian 12 with only PyPI/Debian reachable).
#   .venv-ref/  PyPI torch==2.11.0 used on CPU only, installed --no-deps with only what
#               importing it on CPU needs (the two CUDA runtime wheels libtorch_cpu.so
#               links against, and torch's pure-python dependencies: not the GBs of CUDA
#               wheels), efficientnet-pytorch==0.7.1 (--no-deps: its only dependency is
#               torch), safetensors, numpy, scikit-learn, scipy, pillow (the resize reference).
# A finished environment is marked by .venv-ref/.complete (written last, holding the pin
# list): a second run with the same pins returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv-ref}"
PY="${PYTHON:-python3}"

NODEPS="torch==2.11.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85 efficientnet-pytorch==0.7.1"
DEPS="filelock typing-extensions sympy networkx jinja2 fsspec setuptools safetensors numpy scikit-learn scipy pillow"
PINS="$NODEPS | $DEPS"

if [ -f "$VENV/.complete" ] && [ "$(cat "$VENV/.complete")" = "$PINS" ]; then
  echo "python reference environment present: $VENV"; exit 0
fi
start=$(date +%s)
# gcc and binutils build the CUDA stand-ins; python3-venv is a separate Debian package; a pyenv python has venv built in.
need=()
command -v gcc >/dev/null || need+=(gcc)
command -v readelf >/dev/null || need+=(binutils)
"$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q $DEPS
# pip then lists torch's CUDA requirements as "not installed": that is the point of --no-deps.
log=$(mktemp)
if ! "$VENV/bin/python" -m pip install -q --no-deps $NODEPS >"$log" 2>&1; then cat "$log"; rm -f "$log"; exit 1; fi
grep -v "which is not installed\|dependency resolver\|dependency conflicts" "$log" || true; rm -f "$log"
# PyPI torch's libtorch_python.so/libtorch_cuda.so link against cuDNN, cuBLAS, NCCL, ... (about
# 2 GB of wheels) that CPU use never calls: stand-in libraries that abort if ever called.
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$VENV/bin/python" scripts/cuda-stubs.py "$SITE/torch/lib" "$SITE/nvidia/cu13/lib"
# Proof that it works: torch imports and computes on CPU, the reference packages import.
"$VENV/bin/python" - <<'PY'
import torch, efficientnet_pytorch, safetensors.torch, numpy, sklearn.metrics, scipy.ndimage
assert torch.__version__.startswith("2.11.0"), torch.__version__
assert not torch.cuda.is_available()
x = torch.randn(4, 8)
torch.testing.assert_close(torch.nn.functional.linear(x, torch.eye(8)), x)
print("python reference environment: torch", torch.__version__, "efficientnet_pytorch",
      efficientnet_pytorch.__version__, "numpy", numpy.__version__)
PY
echo "$PINS" > "$VENV/.complete"
echo "setup-python: done in $(( $(date +%s) - start )) s"
