#!/usr/bin/env bash
# Makes Debian's headless Chromium available for the web view's browser test (tests/browser).
# Prints the browser's path; installs the package with apt-get when missing and running as root.
# Exits non-zero (and says why on stderr) where it cannot: the test then skips with that reason.
set -euo pipefail
for name in chromium chromium-browser; do
  if command -v "$name" >/dev/null; then command -v "$name"; exit 0; fi
done
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "chromium is not installed and apt-get cannot run here (needs root on Debian/Ubuntu)" >&2
  exit 1
fi
apt-get update -qq >&2 || true
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2; then
  echo "apt-get install chromium failed" >&2
  exit 1
fi
command -v chromium
