# Sourced after scripts/lib/venv.sh: phalanx built with the router compiled by mypyc (setup.py,
# PHALANX_COMPILE=1) into a directory of its own, for PYTHONPATH; exports PHALANX_COMPILED_DIR.
# The build (about 2 minutes on 2 cores) is kept under ${PHALANX_CACHE_DIR:-~/.cache/phalanx}/compiled,
# keyed by a hash of everything it is made from, and reused while that hash is unchanged.
compiled_cache="${PHALANX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/phalanx}/compiled"
compiled_key="$(
  cd "$root"
  {
    "$venv/bin/python" -c 'import sys, mypy.version; print(sys.version, mypy.version.__version__)'
    sha256sum setup.py pyproject.toml
    find src -name '*.py' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
)"
export PHALANX_COMPILED_DIR="$compiled_cache/$compiled_key"
if [ ! -d "$PHALANX_COMPILED_DIR" ]; then
  echo "==> compiling the router with mypyc into $PHALANX_COMPILED_DIR (reused while the sources stay the same)"
  # A C compiler and Python's headers: installed from Debian's packages when missing and allowed.
  include="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  if ! command -v gcc >/dev/null 2>&1 || [ ! -f "$include/Python.h" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "==> installing gcc and Python's headers (apt-get) for the compiled router"
      apt-get install -y -q gcc "libpython$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-dev" \
        >/dev/null
    fi
    if ! command -v gcc >/dev/null 2>&1 || [ ! -f "$include/Python.h" ]; then
      echo "The compiled router needs gcc and Python's headers ($include/Python.h): install them" >&2
      echo "(Debian: apt-get install gcc python3-dev) and run again, or skip this tier: ./scripts/test --no-compiled." >&2
      exit 1
    fi
  fi
  mkdir -p "$compiled_cache"
  find "$compiled_cache" -maxdepth 1 -name '.build-*' -mmin +60 -exec rm -rf {} + # left by a killed build
  # Built from a copy (a build never writes into the checkout) into a scratch directory, moved
  # into place whole: an interrupted build leaves nothing that looks finished.
  compiled_scratch="$(mktemp -d "$compiled_cache/.build-XXXXXX")"
  (cd "$root" && cp -r setup.py pyproject.toml README.md src "$compiled_scratch/") || exit 1
  mkdir "$compiled_scratch/out"
  PHALANX_COMPILE=1 "$venv/bin/python" -m pip install --quiet --no-build-isolation --no-deps \
    --target "$compiled_scratch/out" "$compiled_scratch" || exit 1
  mv "$compiled_scratch/out" "$PHALANX_COMPILED_DIR" 2>/dev/null || [ -d "$PHALANX_COMPILED_DIR" ] || exit 1
  rm -rf "$compiled_scratch"
  # Older builds go: only the newest few are kept.
  ls -1dt "$compiled_cache"/*/ 2>/dev/null | tail -n +4 | xargs -r rm -rf
fi
