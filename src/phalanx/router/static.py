"""Static discovery: `phalanx router --backend URL ...`, for use in front of any OpenAI-compatible engine.

Each URL is one endpoint that is always ready; its models are learned from its `GET /v1/models`
(and health checks or ejection take it out of rotation while it is down).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from phalanx.router.endpoints import Endpoint

STATIC_SERVING = "static"


class BackendURLError(ValueError):
    """A `--backend` value that is not an http(s)://host:port URL; the message says which and why."""


def static_endpoints(urls: Sequence[str]) -> list[Endpoint]:
    endpoints: list[Endpoint] = []
    seen: set[str] = set()
    for index, raw in enumerate(urls):
        url = raw.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendURLError(f"--backend {raw!r}: expected http://host:port or https://host:port")
        try:
            port = parts.port
        except ValueError:
            raise BackendURLError(f"--backend {raw!r}: the port is not a number from 1 to 65535") from None
        if parts.path or parts.query or parts.fragment:
            raise BackendURLError(
                f"--backend {raw!r}: give the server's root (requests keep their own /v1/... path)"
            )
        name = parts.netloc
        if name in seen:
            raise BackendURLError(f"--backend {raw!r}: given twice")
        seen.add(name)
        if port is None:
            url = f"{url}:{443 if parts.scheme == 'https' else 80}"
        endpoints.append(Endpoint(name=name, url=url, serving=STATIC_SERVING, group_index=index))
    return endpoints
