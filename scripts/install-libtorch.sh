#!/usr/bin/env bash
# libtorch 2.11.0 for tch 0.24.0, built from PyPI wheels (idempotent), CPU part only, into
# $LIBTORCH_DIR (~/.cache/libtorch-2.11.0-cpu): torch==2.11.0 plus the two CUDA runtime
# wheels whose libraries libtorch_cpu.so needs even on CPU, and an empty stand-in
# libtorch.so. Adapted from the verified recipe. (The CUDA build, ras-cuda, compiles against
# these headers and links libtorch_cuda.so from the same wheel in .venv-ref: build.rs.)
set -euo pipefail
WHEELS=(torch==2.11.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85)
LIBTORCH_DIR="${LIBTORCH_DIR:-$HOME/.cache/libtorch-2.11.0-cpu}"
[ -f "$LIBTORCH_DIR/.complete" ] && { echo "libtorch present: $LIBTORCH_DIR"; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp" "$LIBTORCH_DIR.partial"' EXIT
python3 -m pip download --no-deps --no-cache-dir -q -d "$tmp" "${WHEELS[@]}"
rm -rf "$LIBTORCH_DIR.partial"; mkdir -p "$LIBTORCH_DIR.partial/lib"
# The headers, and into lib/ the libraries in `keep`.
python3 - "$tmp" "$LIBTORCH_DIR.partial" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, dst = sys.argv[1:3]
keep = {"libc10.so", "libtorch_cpu.so", "libgomp.so.1", "libcudart.so.13", "libcupti.so.13"}
def is_lib(n):
    return "/lib/" in n and os.path.basename(n) in keep
for whl in glob.glob(os.path.join(tmp, "*.whl")):
    with zipfile.ZipFile(whl) as z:
        for n in z.namelist():
            if n.startswith("torch/include/") and not n.endswith("/"):
                out = os.path.join(dst, n[len("torch/"):])
            elif is_lib(n):
                out = os.path.join(dst, "lib", os.path.basename(n))
            else:
                continue
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(n) as s, open(out, "wb") as d:
                shutil.copyfileobj(s, d)
PY
# tch links -ltorch; the wheel's libtorch.so NEEDs libtorch_cuda.so -> use an empty stub
gcc -shared -o "$LIBTORCH_DIR.partial/lib/libtorch.so" -Wl,-soname,libtorch.so -x c /dev/null
strip --strip-unneeded "$LIBTORCH_DIR.partial/lib/libtorch_cpu.so"   # optional: 451 -> 358 MB
echo 2.11.0 > "$LIBTORCH_DIR.partial/build-version"
touch "$LIBTORCH_DIR.partial/.complete"
rm -rf "$LIBTORCH_DIR"; mv "$LIBTORCH_DIR.partial" "$LIBTORCH_DIR"
echo "libtorch installed: $LIBTORCH_DIR"
