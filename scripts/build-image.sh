#!/usr/bin/env bash
# Builds the Phalanx container image with buildah (no daemon): deploy/image/Containerfile on a base
# with Python 3, holding this checkout's wheel and its runtime dependencies only.
#
# Usage: scripts/build-image.sh [--base IMAGE] [--name NAME] [--force] [--iidfile FILE] [--print-name]
#   --base IMAGE   base image with Python 3 (the version of the Python that builds the wheels, see
#                  below) and /bin/sh, e.g. from a registry you reach. Default: a Debian base built here
#                  from Debian packages with mmdebstrap (no registry needed), kept as
#                  localhost/phalanx-base:bookworm.
#   --name NAME    the image's name (default phalanx:VERSION, VERSION from pyproject.toml: the chart's
#                  and `phalanx install`'s default image).
#   --force        rebuild the base (when built here) and the image even if nothing changed.
#   --iidfile FILE write the image ID to FILE.
#   --print-name   print the image's name and exit (builds nothing).
# Idempotent: the image carries a hash of what goes into it (the sources of the wheel, the Containerfile,
# this script, the base's ID) and is reused while that hash is unchanged. Dependencies are resolved when
# the image is built; --force picks up newer ones.
# Needs Linux, buildah, gcc (and mmdebstrap for the default base): installed with apt-get when missing,
# if run as root on Debian or Ubuntu. The wheels are built by the Python of .venv (scripts/lib/venv.sh,
# PHALANX_PYTHON chooses it), so the base must have that Python version.
# Caches: ${PHALANX_CACHE_DIR:-~/.cache/phalanx}/image (scratch space, lock); images in buildah's storage.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${PHALANX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/phalanx}/image"
containerfile="$root/deploy/image/Containerfile"
suite=bookworm
default_base="localhost/phalanx-base:$suite"
hash_label=dev.phalanx.build-hash

log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'build-image: ERROR: %s\n' "$*" >&2; exit 1; }

base=""
name=""
force=0
iidfile=""
print_name=0
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base="${2:?--base needs an image}"; shift 2 ;;
    --name) name="${2:?--name needs an image name}"; shift 2 ;;
    --force) force=1; shift ;;
    --iidfile) iidfile="${2:?--iidfile needs a file}"; shift 2 ;;
    --print-name) print_name=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml" | head -n 1)"
[ -n "$version" ] || die "no version in pyproject.toml"
name="${name:-phalanx:$version}"
if [ "$print_name" = 1 ]; then echo "$name"; exit 0; fi
[ "$(uname -s)" = Linux ] || die "buildah runs on Linux only"

# The tools: installed from the distribution's packages when missing and allowed.
needed=(buildah gcc)  # gcc: the wheel's router is compiled with mypyc (setup.py)
[ -n "$base" ] || needed+=(mmdebstrap)
missing=()
for tool in "${needed[@]}"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    die "${missing[*]} not installed; install it (Debian/Ubuntu: apt-get install ${missing[*]}), or run as root where apt-get works"
  fi
fi

mkdir -p "$cache"
exec 9>"$cache/lock"
flock -w 1800 9 || die "another build holds $cache/lock"
scratch="$(mktemp -d "$cache/build.XXXXXX")"
containers=()
cleanup() {
  for c in "${containers[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$scratch"
}
trap cleanup EXIT

image_id() {
  { buildah images --noheading --no-trunc --format '{{.ID}}' "$1" 2>/dev/null || true; } | head -n 1 | sed 's/^sha256://'
}
label_of() { buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }

# The default base: Debian's essential packages and Python 3, nothing else (no apt, no docs, no pip).
base_recipe=(--variant=essential --include=python3,ca-certificates
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --aptopt='APT::Install-Recommends "false"'
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*' --skip=output/dev "$suite")
build_default_base() {
  local recipe_hash tarball c
  recipe_hash="$(printf '%s\n' "${base_recipe[@]}" | sha256sum | cut -c1-16)"
  if [ "$force" = 0 ] && [ "$(label_of "$default_base" dev.phalanx.base-recipe)" = "$recipe_hash" ]; then
    return
  fi
  log "building the base $default_base from Debian packages (mmdebstrap, about a minute)"
  tarball="$scratch/rootfs.tar"
  if ! TMPDIR="$scratch" mmdebstrap --quiet "${base_recipe[@]}" "$tarball" >"$scratch/mmdebstrap.log" 2>&1; then
    tail -n 30 "$scratch/mmdebstrap.log" >&2
    die "mmdebstrap failed (the last lines of its output are above)"
  fi
  c="$(buildah from scratch)"
  containers+=("$c")
  buildah add --quiet "$c" "$tarball" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/sh --label "dev.phalanx.base-recipe=$recipe_hash" "$c"
  buildah commit --quiet --rm "$c" "$default_base" >/dev/null
  containers=()
  rm -f "$tarball"
}

if [ -z "$base" ]; then
  build_default_base
  base="$default_base"
elif [ -z "$(image_id "$base")" ]; then
  log "pulling the base $base"
  buildah pull --quiet "$base" >/dev/null \
    || die "could not pull the base $base (a registry you reach; \`buildah login REGISTRY\` for a private one)"
fi
base_id="$(image_id "$base")"
[ -n "$base_id" ] || die "base image $base not found"

# What the image is made of: the files the wheel is built from, the recipe, and the base.
cd "$root"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t sources < <(git ls-files --cached --others --exclude-standard -- src setup.py pyproject.toml README.md \
    | sort)
else
  mapfile -t sources < <(find src setup.py pyproject.toml README.md -type f ! -path '*/__pycache__/*' | sort)
fi
existing=()
for f in "${sources[@]}"; do [ -f "$f" ] && existing+=("$f"); done
build_hash="$({ sha256sum "${existing[@]}" deploy/image/Containerfile scripts/build-image.sh; echo "$base_id"; } \
  | sha256sum | cut -c1-32)"

old_id="$(image_id "$name")"
if [ "$force" = 0 ] && [ -n "$old_id" ] && [ "$(label_of "$name" "$hash_label")" = "$build_hash" ]; then
  log "$name is up to date (nothing it is built from changed)"
else
  # Build the wheels from a copy of exactly the hashed files, so stale build output never ships.
  mkdir -p "$scratch/source" "$scratch/context/wheels"
  cp --parents "${existing[@]}" "$scratch/source/"
  source scripts/lib/venv.sh >&2
  py="$root/.venv/bin/python"
  base_python="$(
    c="$(buildah from --pull=never "$base")"
    buildah run --isolation chroot "$c" -- python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' || true
    buildah rm "$c" >/dev/null
  )"
  wheel_python="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  [ -n "$base_python" ] || die "the base $base has no python3"
  [ "$base_python" = "$wheel_python" ] || die "the base $base has Python $base_python but the wheels \
would be built by Python $wheel_python (.venv): choose a base with Python $wheel_python, or set \
PHALANX_PYTHON to a Python $base_python and remove .venv"
  log "building the wheels (phalanx $version and its runtime dependencies, Python $wheel_python)"
  # phalanx's own wheel with the router compiled by mypyc (setup.py); mypy reads the types of its
  # dependencies, so it builds in .venv, which has them. Then the wheels of those dependencies.
  PHALANX_COMPILE=1 "$py" -m pip wheel --quiet --no-deps --no-build-isolation \
    --wheel-dir "$scratch/context/wheels" "$scratch/source" >&2
  "$py" -m pip wheel --quiet --wheel-dir "$scratch/context/wheels" --find-links "$scratch/context/wheels" \
    "$scratch/context/wheels"/phalanx-*.whl >&2
  "$py" -m pip download --quiet --no-deps --only-binary=:all: --dest "$scratch/context/wheels" pip >&2
  log "building $name on $base"
  buildah build --isolation chroot --pull=never --quiet -f "$containerfile" \
    --build-arg "BASE=$base" --build-arg "VERSION=$version" --label "$hash_label=$build_hash" \
    -t "$name" "$scratch/context" >/dev/null
  new_id="$(image_id "$name")"
  # The image this one replaced, unless another name still points at it.
  if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then buildah rmi "$old_id" >/dev/null 2>&1 || true; fi
fi

id="$(image_id "$name")"
[ -z "$iidfile" ] || echo "$id" > "$iidfile"
size="$(buildah images --noheading --format '{{.Size}}' "$name" | head -n 1 | xargs)"
echo "$name (id ${id:0:12}, $size, base $base)"
