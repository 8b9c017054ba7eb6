"""What the router knows of its backends beyond discovery: their load and their health.

`load` scrapes each backend's vLLM metrics (queue, running batch, KV usage); `outlier` decides
which endpoints to route around from request outcomes and health checks; `health` runs the checks.
Each has a pure core (`parse_load`, the `OutlierDetector` state machine) and a thin asyncio shell
that owns its tasks and never raises into the router.
"""

from phalanx.router.backends.health import HealthChecker
from phalanx.router.backends.load import BackendLoad, LoadScraper, ScrapeEvent, parse_load
from phalanx.router.backends.outlier import (
    EventKind,
    FailureKind,
    HealthEvent,
    OutlierConfig,
    OutlierDetector,
)

__all__ = [
    "BackendLoad",
    "EventKind",
    "FailureKind",
    "HealthChecker",
    "HealthEvent",
    "LoadScraper",
    "OutlierConfig",
    "OutlierDetector",
    "ScrapeEvent",
    "parse_load",
]
