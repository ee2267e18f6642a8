#!/usr/bin/env bash
# Headless Chromium and its chromedriver from Debian (the browser tests of `ras serve`:
# tests/browser.rs). Only what is missing is installed (idempotent); about 45 s once.
# No browser download of its own works here (playwright's and puppeteer's installers
# need the internet): Debian's packages are the browser the tests use.
set -euo pipefail
need=()
for pkg in chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup-browser: installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  # With its recommended packages: the fonts that make screenshots readable.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v chromedriver >/dev/null || { echo "setup-browser: chromedriver missing after install" >&2; exit 1; }
