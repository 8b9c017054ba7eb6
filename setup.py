"""Builds phalanx. With PHALANX_COMPILE=1 the router's request path is compiled with mypyc.

The compiled modules are the same Python sources, type-checked by mypy and turned into C extensions:
about a quarter less CPU per proxied request (docs/router.md, "Compiled router"). Building them needs
mypy, a C compiler, Python's headers, and phalanx's own dependencies importable (mypy reads their
types), so the build runs without isolation, in an environment that has them:

    PHALANX_COMPILE=1 pip install --no-build-isolation .

Without PHALANX_COMPILE every module stays pure Python (what an editable install needs: a compiled
module would shadow edits to its source). scripts/build-image.sh builds the image's wheel compiled.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

# Every proxied request runs through these; listed by path, compiled together (one shared library).
COMPILED = [
    "src/phalanx/http/guard.py",
    "src/phalanx/router/admission.py",
    "src/phalanx/router/balancer.py",
    "src/phalanx/router/bodies.py",
    "src/phalanx/router/client.py",
    "src/phalanx/router/endpoints.py",
    "src/phalanx/router/front.py",
    "src/phalanx/router/logs.py",
    "src/phalanx/router/messages.py",
    "src/phalanx/router/parsepool.py",
    "src/phalanx/router/metrics.py",
    "src/phalanx/router/parsing.py",
    "src/phalanx/router/proxy.py",
    "src/phalanx/router/ratelimit.py",
    "src/phalanx/router/rejection.py",
    "src/phalanx/router/server.py",
    "src/phalanx/router/upstream.py",
    "src/phalanx/router/upstream_session.py",
    "src/phalanx/router/usage.py",
    "src/phalanx/router/backends/load.py",
    "src/phalanx/router/backends/outlier.py",
    "src/phalanx/router/policies/base.py",
    "src/phalanx/router/policies/pd.py",
    "src/phalanx/router/policies/pdbacklog.py",
    "src/phalanx/router/policies/prefix.py",
    "src/phalanx/router/policies/request.py",
    "src/phalanx/router/policies/scored.py",
    "src/phalanx/router/policies/simple.py",
    "src/phalanx/router/policies/state.py",
]


def ext_modules() -> list[object]:
    if os.environ.get("PHALANX_COMPILE", "0") != "1":
        return []
    if "editable_wheel" in sys.argv:  # a compiled module next to its source would shadow edits of it
        sys.exit("PHALANX_COMPILE=1 is for wheels and plain installs, not an editable install")
    try:
        from mypyc.build import mypycify
    except ImportError:
        sys.exit(
            "PHALANX_COMPILE=1 needs mypy in the build environment: "
            "pip install mypy, then pip install --no-build-isolation ."
        )
    return list(mypycify(COMPILED, opt_level="3"))


setup(ext_modules=ext_modules())
