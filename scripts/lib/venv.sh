# Sourced by the scripts in scripts/: makes .venv hold this checkout's package and its
# dependencies, reinstalling only when pyproject.toml changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv"
python="${PHALANX_PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "phalanx needs Python 3.11 or newer; '$python' is $("$python" --version 2>&1)." >&2
  echo "Set PHALANX_PYTHON to a Python 3.11+ interpreter." >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating $venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.phalanx-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)-${PHALANX_EXTRAS:-dev}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing phalanx[${PHALANX_EXTRAS:-dev}] into $venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$root[${PHALANX_EXTRAS:-dev}]"
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
