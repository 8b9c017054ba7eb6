#!/usr/bin/env bash
# Builds LeaderWorkerSet's controller manager from its public Go module, for bench/operator.
#
#   bench/operator/build_lws.sh            # -> ~/.cache/phalanx/lws/<version>/
#
# The module (source, CRDs, webhook configuration) comes through the Go module proxy into the Go module
# cache; nothing of it is copied into this repository. The result is reused when present:
#   manager                          the controller manager binary (go build ./cmd)
#   config/crd/bases/*.yaml          the CRDs, as the module ships them
#   config/webhook/*.yaml            the webhook configurations and their kustomize patches
#   VERSION                          the module version and its go.sum hash
set -euo pipefail

VERSION="${LWS_VERSION:-v0.9.0}"   # the newest release the module proxy serves here (v0.10.0 is refused)
MODULE="sigs.k8s.io/lws"
DEST="${PHALANX_LWS_DIR:-$HOME/.cache/phalanx/lws/$VERSION}"

if [[ -x "$DEST/manager" && -f "$DEST/VERSION" ]]; then
    echo "LeaderWorkerSet $VERSION already built: $DEST"
    exit 0
fi
command -v go >/dev/null || { echo "the Go toolchain is needed (go not on PATH)" >&2; exit 1; }

# `go install module/cmd@version` refuses modules with replace directives, so build from a copy.
info="$(cd /tmp && go mod download -json "$MODULE@$VERSION")"
src="$(printf '%s' "$info" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or "")')"
sum="$(printf '%s' "$info" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Sum") or d.get("Error"))')"
[[ -n "$src" && -d "$src" ]] || { echo "could not download $MODULE@$VERSION: $sum" >&2; exit 1; }

work="$(mktemp -d)"
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
cp -r "$src" "$work/lws"
chmod -R u+w "$work/lws"
echo "building $MODULE@$VERSION ($sum) in $work/lws"
(cd "$work/lws" && GOFLAGS=-buildvcs=false go build -trimpath \
    -ldflags "-X $MODULE/pkg/version.GitVersion=$VERSION" -o "$work/manager" ./cmd)

mkdir -p "$DEST.tmp/config/crd/bases" "$DEST.tmp/config/webhook"
cp "$src"/config/crd/bases/*.yaml "$DEST.tmp/config/crd/bases/"
cp "$src"/config/webhook/*.yaml "$DEST.tmp/config/webhook/"
chmod -R u+w "$DEST.tmp"
mv "$work/manager" "$DEST.tmp/manager"
printf '%s %s %s\n' "$MODULE" "$VERSION" "$sum" > "$DEST.tmp/VERSION"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "LeaderWorkerSet $VERSION built: $DEST"
