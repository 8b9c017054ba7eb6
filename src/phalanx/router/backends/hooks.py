"""Callbacks the integrator wires to its metrics and logs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

logger = logging.getLogger("phalanx.router.backends")

T = TypeVar("T")


def call_hook(hook: Callable[[T], None] | None, value: T) -> None:
    """Run a callback; a broken one is logged and never stops a probe loop or the proxy that reported."""
    if hook is None:
        return
    try:
        hook(value)
    except Exception:
        logger.exception("a backend event callback failed on %r", value)
