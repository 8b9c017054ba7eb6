#!/usr/bin/env bash
# Builds grafana-check (main.go here: Grafana dashboards decoded through Grafana's Apache-2.0 schema
# library, github.com/grafana/grafana-foundation-sdk/go, pinned in go.mod/go.sum) into a cache OUTSIDE
# the repository:
#     ${PHALANX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/phalanx}/grafana-check
# and reuses it while the hash of go.mod, go.sum, main.go and the Go version is unchanged.
# Prints the binary's path. Environment: PHALANX_CACHE_DIR, GO (the go command, default `go`).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${PHALANX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/phalanx}"
BIN="$CACHE/grafana-check"
STAMP="$CACHE/grafana-check.stamp"
GO="${GO:-go}"

command -v "$GO" >/dev/null 2>&1 || { echo "grafana-check build: Go is not installed (no '$GO' on PATH)" >&2; exit 3; }
want="$( { cat "$HERE/go.mod" "$HERE/go.sum" "$HERE"/*.go; GOTOOLCHAIN=local "$GO" env GOVERSION; } | sha256sum | cut -d' ' -f1)"
if [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$CACHE"
tmp="$BIN.tmp.$$"
trap 'rm -f "$tmp"' EXIT
(cd "$HERE" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly "$GO" build -trimpath -ldflags "-s -w" -o "$tmp" .)
mv "$tmp" "$BIN"
echo "$want" > "$STAMP"
echo "$BIN"
