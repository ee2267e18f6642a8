#!/usr/bin/env bash
# The S3 server of the test suite (`make test` runs this; `make demo` does not need it):
# s3s-fs 0.14.1, a real S3 protocol server (SigV4 signatures checked) that tests/s3.rs
# starts. Idempotent: skipped when the right version is on PATH or in ~/.cargo/bin.
set -euo pipefail
cd "$(dirname "$0")/.."
# s3s-fs: the S3 server of tests/s3.rs (cargo install, a few minutes once). Skipped when
# the right version is on PATH or in ~/.cargo/bin already.
S3S_VERSION=0.14.1
s3s_ok() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q " $S3S_VERSION"; }
if ! s3s_ok "$(command -v s3s-fs || true)" && ! s3s_ok "$HOME/.cargo/bin/s3s-fs"; then
  echo "setup: installing s3s-fs $S3S_VERSION (the S3 server tests/s3.rs uses; a few minutes once)"
  cargo install s3s-fs --version "$S3S_VERSION" --features binary --locked --quiet
fi
