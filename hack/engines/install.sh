#!/usr/bin/env bash
# Installs the real vLLM and SGLang packages into scratch venvs outside the repository, so that
# hack/engines/check_argv.py can parse our rendered argv with their own argument parsers.
# Idempotent: a venv whose stamp matches the pinned version is left as it is.
# Heavy (several GB each): never part of the default test command.
set -euo pipefail
VLLM_VERSION="${VLLM_VERSION:-0.33.0}"
SGLANG_VERSION="${SGLANG_VERSION:-0.5.23}"
# The vllm-openai image ships Ray, our Ray launcher needs it, and vLLM's ParallelConfig refuses
# --distributed-executor-backend ray when it cannot import it; the PyPI package does not pull it in.
RAY_VERSION="${RAY_VERSION:-2.60.0}"
# LMCache is not a vLLM dependency; parse_vllm.py reads its config keys to check LMCACHE_* env names.
# Without its own dependencies: only its config module is imported, and vLLM's must stay as resolved.
LMCACHE_VERSION="${LMCACHE_VERSION:-0.5.6}"
PYTHON="${PHALANX_PYTHON:-python3.11}"
cache="${PHALANX_ENGINES_CACHE:-$HOME/.cache/phalanx/engines}"
only="${1:-all}"   # all | vllm | sglang

install_one() {
  local name="$1" version="$2"; shift 2
  local extra=("$@")
  local venv="$cache/$name-$version"
  local stamp="$venv/.installed"
  local want="$name==$version ${extra[*]}"
  [ "$name" = vllm ] && want="$want lmcache==$LMCACHE_VERSION"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "==> $name $version already in $venv"
    return
  fi
  echo "==> installing $name $version into $venv"
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet "$name==$version" "${extra[@]}"
  if [ "$name" = vllm ]; then
    "$venv/bin/python" -m pip install --quiet --no-deps "lmcache==$LMCACHE_VERSION"
  fi
  "$venv/bin/python" -c "import importlib.metadata as m; print('$name', m.version('$name'))"
  echo "$want" > "$stamp"
}

mkdir -p "$cache"
case "$only" in
  all) install_one vllm "$VLLM_VERSION" "ray==$RAY_VERSION"; install_one sglang "$SGLANG_VERSION" ;;
  vllm) install_one vllm "$VLLM_VERSION" "ray==$RAY_VERSION" ;;
  sglang) install_one sglang "$SGLANG_VERSION" ;;
  *) echo "usage: $0 [all|vllm|sglang]" >&2; exit 2 ;;
esac
