"""The benchmark's modules import each other by name, as its scripts do (and bench/router's procs.py)."""

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1] / "router")]
