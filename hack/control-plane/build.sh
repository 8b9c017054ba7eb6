#!/usr/bin/env bash
# Builds the test control plane from Go modules (no container engine, no binary downloads):
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, vc-scheduler (Volcano), helm, and
#   yamljson (our own program: the JSON kubectl sends for a YAML file, to test Phalanx's YAML loader against).
#
# Every component is a wrapper Go module under hack/control-plane/<component>/ whose go.mod/go.sum pin the
# versions (one module per component, because their dependency trees clash; yamljson's holds its main.go too).
# Binaries go to a cache OUTSIDE the repository:
#     ${PHALANX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/phalanx}/control-plane/<component>-<version>/bin/
# A component whose binaries and build stamp (hash of go.mod, go.sum, its own .go files, ldflags and Go version)
# are present is reused, so a second run takes seconds.
#
# Overrides: if PHALANX_CONTROL_PLANE_BIN or KUBEBUILDER_ASSETS name a directory holding the binaries of a
# component, those are used and that component is not built (a component is all-or-nothing: setup-envtest's
# directory supplies etcd, but it lacks kube-controller-manager/kube-scheduler, so `kube` is still built).
#
# keda is not built: KEDA's ScaledObject CRD is copied out of its Go module (fetched and checksum-verified by
# `go mod download`), for tests that validate ScaledObjects against it; it is never committed.
#
# Usage: hack/control-plane/build.sh [--print-env] [component ...]
#        (components: kube etcd kwok volcano helm yamljson keda)
# Output: the env file ${CACHE}/control-plane/env (KEY=/abs/path lines, sourceable by bash), also printed.
# Environment: PHALANX_BUILD_JOBS (go build -p, default 2), PHALANX_CACHE_DIR, PHALANX_CONTROL_PLANE_BIN,
#              KUBEBUILDER_ASSETS, GO (the go command, default `go`).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${PHALANX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/phalanx}/control-plane"
ENV_FILE="$CACHE_ROOT/env"
GO="${GO:-go}"
JOBS="${PHALANX_BUILD_JOBS:-2}"
MIN_GO="1.26"
ALL_COMPONENTS=(etcd kube kwok volcano helm yamljson keda)
KEDA_MODULE="github.com/kedacore/keda/v2"
KEDA_VERSION="v2.20.2"  # the newest release whose module Go 1.26 can extract

log() { printf '[control-plane %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'control-plane build: ERROR: %s\n' "$*" >&2; exit 1; }

print_env=0
components=()
for arg in "$@"; do
  case "$arg" in
    --print-env) print_env=1 ;;
    -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}"; exit 0 ;;
    etcd|kube|kwok|volcano|helm|yamljson|keda) components+=("$arg") ;;
    *) die "unknown argument '$arg' (components: ${ALL_COMPONENTS[*]})" ;;
  esac
done
[[ ${#components[@]} -gt 0 ]] || components=("${ALL_COMPONENTS[@]}")

# Binaries of each component, and the Go package each is built from.
binaries_of() {
  case "$1" in
    etcd) echo "etcd" ;;
    kube) echo "kube-apiserver kube-controller-manager kube-scheduler" ;;
    kwok) echo "kwok" ;;
    volcano) echo "vc-scheduler" ;;
    helm) echo "helm" ;;
    yamljson) echo "yamljson" ;;
  esac
}
package_of() {
  case "$1" in
    etcd) echo "go.etcd.io/etcd/server/v3" ;;
    kube-apiserver|kube-controller-manager|kube-scheduler) echo "k8s.io/kubernetes/cmd/$1" ;;
    kwok) echo "sigs.k8s.io/kwok/cmd/kwok" ;;
    vc-scheduler) echo "volcano.sh/volcano/cmd/scheduler" ;;
    helm) echo "helm.sh/helm/v4/cmd/helm" ;;
    yamljson) echo "phalanx.dev/hack/control-plane/yamljson" ;;
  esac
}
# The module whose version names the component (read from the wrapper's go.mod, the single source of truth).
main_module_of() {
  case "$1" in
    etcd) echo "go.etcd.io/etcd/server/v3" ;;
    kube) echo "k8s.io/kubernetes" ;;
    kwok) echo "sigs.k8s.io/kwok" ;;
    volcano) echo "volcano.sh/volcano" ;;
    helm) echo "helm.sh/helm/v4" ;;
    yamljson) echo "sigs.k8s.io/yaml" ;;
  esac
}
module_version() { # <wrapper dir> <module path>
  awk -v m="$2" '($1 == m && $2 ~ /^v/) {print $2; exit} ($1 == "require" && $2 == m) {print $3; exit}' "$1/go.mod"
}

ldflags_of() { # <component> <version>
  local v="$2"
  case "$1" in
    kube)
      local minor="${v#v1.}"; minor="${minor%%.*}"
      local s="-s -w"
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        s+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
        s+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
      done
      echo "$s" ;;
    volcano)
      echo "-s -w -X volcano.sh/volcano/pkg/version.Version=$v -X volcano.sh/volcano/pkg/version.GitSHA=module" ;;
    helm)
      echo "-s -w -X helm.sh/helm/v4/internal/version.version=$v" ;;
    *) echo "-s -w" ;;
  esac
}

# ---- Go toolchain check -------------------------------------------------------------------------------------
GO_CHECKED=0
check_go() {
  (( GO_CHECKED )) && return 0
  command -v "$GO" >/dev/null 2>&1 || die "Go is not installed (no '$GO' on PATH). Install Go >= $MIN_GO \
(https://go.dev/dl/) or point PHALANX_CONTROL_PLANE_BIN / KUBEBUILDER_ASSETS at prebuilt binaries."
  local gv
  gv="$(GOTOOLCHAIN=local "$GO" env GOVERSION 2>/dev/null || true)"
  gv="${gv#go}"
  [[ -n "$gv" ]] || die "could not read the Go version from '$GO env GOVERSION'"
  local maj="${gv%%.*}" rest="${gv#*.}"; local min="${rest%%[.a-z]*}"
  local need_maj="${MIN_GO%%.*}" need_min="${MIN_GO#*.}"
  if (( maj < need_maj || (maj == need_maj && min < need_min) )); then
    die "Go $gv is too old: the wrapper modules need Go >= $MIN_GO (sigs.k8s.io/kwok v0.8 declares go 1.26)."
  fi
  log "using Go $gv ($(command -v "$GO")), build parallelism -p=$JOBS"
  GO_CHECKED=1
}

# ---- Overrides -----------------------------------------------------------------------------------------------
find_override() { # <binary> -> path or empty
  local b="$1" d
  for d in "${PHALANX_CONTROL_PLANE_BIN:-}" "${KUBEBUILDER_ASSETS:-}"; do
    [[ -n "$d" && -x "$d/$b" ]] && { echo "$d/$b"; return 0; }
  done
  return 0
}

declare -A RESULT=()

build_component() {
  local comp="$1" start=$SECONDS
  local bins; bins="$(binaries_of "$comp")"
  # 1. override directory
  local all_found=1 b p
  for b in $bins; do
    p="$(find_override "$b")"
    if [[ -n "$p" ]]; then RESULT[$b]="$p"; else all_found=0; fi
  done
  if (( all_found )); then
    log "$comp: using override binaries ($bins) from PHALANX_CONTROL_PLANE_BIN/KUBEBUILDER_ASSETS"
    return 0
  fi
  # 2. cache (Go is needed from here on: `go env` feeds the stamp)
  check_go
  local wdir="$HERE/$comp"
  [[ -f "$wdir/go.mod" ]] || die "missing wrapper module $wdir/go.mod"
  local ver; ver="$(module_version "$wdir" "$(main_module_of "$comp")")"
  [[ -n "$ver" ]] || die "cannot read the version of $(main_module_of "$comp") from $wdir/go.mod"
  local out="$CACHE_ROOT/$comp-$ver"
  local ld; ld="$(ldflags_of "$comp" "$ver")"
  local stamp
  stamp="$( { grep -v '^[[:space:]]*//' "$wdir/go.mod"; cat "$wdir/go.sum"; find "$wdir" -maxdepth 1 -name '*.go' -exec cat {} +
              echo "$ld"; GOTOOLCHAIN=local "$GO" env GOVERSION GOOS GOARCH; } \
            | sha256sum | cut -d' ' -f1)"
  local fresh=1
  [[ -f "$out/.stamp" && "$(cat "$out/.stamp")" == "$stamp" ]] || fresh=0
  for b in $bins; do [[ -x "$out/bin/$b" ]] || fresh=0; done
  if (( fresh )); then
    for b in $bins; do RESULT[$b]="$out/bin/$b"; done
    log "$comp $ver: up to date in $out ($((SECONDS - start))s)"
    return 0
  fi
  # 3. build
  log "$comp $ver: building $bins (cold builds take minutes) ..."
  mkdir -p "$out/bin"
  rm -f "$out/.stamp"
  for b in $bins; do
    local t0=$SECONDS
    ( cd "$wdir" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" \
        "$GO" build -p "$JOBS" -trimpath -ldflags "$ld" -o "$out/bin/$b.tmp" "$(package_of "$b")" ) \
      || die "$comp: 'go build $(package_of "$b")' failed in $wdir (see the compiler output above)"
    mv -f "$out/bin/$b.tmp" "$out/bin/$b"
    RESULT[$b]="$out/bin/$b"
    log "$comp $ver: built $b in $((SECONDS - t0))s"
  done
  echo "$stamp" > "$out/.stamp"
  log "$comp $ver: done in $((SECONDS - start))s -> $out/bin"
}

# KEDA's ScaledObject CRD, out of its module (the env file names it PHALANX_CRD_KEDA_SCALEDOBJECTS).
declare -A CRDS=()
fetch_keda() {
  local out="$CACHE_ROOT/keda-$KEDA_VERSION/crds" file="keda.sh_scaledobjects.yaml" dir
  if [[ ! -f "$out/$file" ]]; then
    check_go
    dir="$(cd "$CACHE_ROOT" && GOTOOLCHAIN=local "$GO" mod download -json "$KEDA_MODULE@$KEDA_VERSION" \
           | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -n "$dir" && -f "$dir/config/crd/bases/$file" ]] || die "keda: no $file in $KEDA_MODULE@$KEDA_VERSION"
    mkdir -p "$out"
    install -m 0644 "$dir/config/crd/bases/$file" "$out/$file.tmp"
    mv -f "$out/$file.tmp" "$out/$file"
  fi
  CRDS[PHALANX_CRD_KEDA_SCALEDOBJECTS]="$out/$file"
  log "keda $KEDA_VERSION: ScaledObject CRD in $out"
}

# Merge RESULT into the env file (kept from earlier runs), so partial builds are usable at once.
write_env() {
  declare -A envmap=()
  local k v b key
  if [[ -f "$ENV_FILE" ]]; then
    while IFS='=' read -r k v; do [[ "$k" =~ ^PHALANX_(BIN|CRD)_ ]] && envmap[$k]="$v"; done < "$ENV_FILE"
  fi
  for b in "${!RESULT[@]}"; do
    key="PHALANX_BIN_$(echo "$b" | tr 'a-z-' 'A-Z_')"
    envmap[$key]="${RESULT[$b]}"
  done
  for key in "${!CRDS[@]}"; do envmap[$key]="${CRDS[$key]}"; done
  {
    echo "# Written by hack/control-plane/build.sh; KEY=absolute path of each control-plane binary (or CRD)."
    for key in $(printf '%s\n' "${!envmap[@]}" | sort); do echo "$key=${envmap[$key]}"; done
  } > "$ENV_FILE.tmp"
  mv -f "$ENV_FILE.tmp" "$ENV_FILE"
}

main() {
  local total=$SECONDS comp
  mkdir -p "$CACHE_ROOT"
  for comp in "${components[@]}"; do
    if [[ "$comp" == keda ]]; then fetch_keda; else build_component "$comp"; fi
    write_env
  done
  log "all requested components ready in $((SECONDS - total))s; env file: $ENV_FILE"
  if (( print_env )); then cat "$ENV_FILE"; else grep -v '^#' "$ENV_FILE" >&2; fi
}

main
