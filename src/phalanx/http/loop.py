"""The event loop Phalanx's servers run on: uvloop where it is installed, else asyncio's own.

uvloop (libuv) does the loop's own work per socket event in C: it took the router's CPU per
streamed request from 1.15 to 0.96 ms on the benchmark VM (bench/router/results.md).
`PHALANX_EVENT_LOOP=asyncio` turns it off, for debugging or to compare; `uvloop` makes its absence
an error instead of a silent fallback.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

EVENT_LOOP_ENV = "PHALANX_EVENT_LOOP"


class EventLoopError(Exception):
    """`PHALANX_EVENT_LOOP` names a loop that is unknown or not installed."""


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop to create; None is asyncio's default."""
    choice = os.environ.get(EVENT_LOOP_ENV, "").strip().lower() or "auto"
    if choice == "asyncio":
        return None
    if choice not in ("auto", "uvloop"):
        raise EventLoopError(f"{EVENT_LOOP_ENV}={choice!r}: use `uvloop`, `asyncio` or leave it unset")
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise EventLoopError(
                f"{EVENT_LOOP_ENV}=uvloop but uvloop is not installed: `pip install uvloop`, "
                f"or set {EVENT_LOOP_ENV}=asyncio"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the loop `loop_factory` picks."""
    try:
        factory = loop_factory()
    except EventLoopError:
        main.close()  # never awaited: close it so Python does not warn
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
