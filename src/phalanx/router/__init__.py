"""OpenAI-compatible gateway: discovery of ready entry pods, balancing policies, proxying."""

from phalanx.router.balancer import Availability, availability, served_models
from phalanx.router.endpoints import Endpoint
from phalanx.router.server import PROXIED_PATHS, Router, RouterConfig, running

__all__ = [
    "PROXIED_PATHS",
    "Availability",
    "Endpoint",
    "Router",
    "RouterConfig",
    "availability",
    "running",
    "served_models",
]
