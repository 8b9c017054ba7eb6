"""What the router knows about one serving group's entry pod, as plain data pushed in by discovery."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    """One HTTP entry pod of a serving group.

    `models` empty means "ask the endpoint": the router learns them from its `GET /v1/models`.
    """

    name: str
    url: str
    serving: str
    group_index: int
    models: tuple[str, ...] = ()
    ready: bool = True
    draining: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("an endpoint needs a name")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint {self.name}: url must be http(s)://host:port, got {self.url!r}")
        # A trailing slash would double up with the request path.
        object.__setattr__(self, "url", self.url.rstrip("/"))
        object.__setattr__(self, "models", tuple(self.models))

    @property
    def routable(self) -> bool:
        """May take new requests (in-flight ones finish either way)."""
        return self.ready and not self.draining


def check_unique(endpoints: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    """In-flight counts are keyed by name, so two endpoints may not share one."""
    out = tuple(endpoints)
    seen: set[str] = set()
    for ep in out:
        if ep.name in seen:
            raise ValueError(f"duplicate endpoint name {ep.name!r}")
        seen.add(ep.name)
    return out
