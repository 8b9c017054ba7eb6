"""Static discovery: `phalanx router --backend URL ...`, for use in front of any OpenAI-compatible engine.

Each URL is one endpoint that is always ready; its models are learned from its `GET /v1/models`
(and health checks or ejection take it out of rotation while it is down).

A query string marks a prefill/decode engine, as pod labels do in a cluster:
`http://10.0.0.5:8000?pd-role=prefill&pd-protocol=sglang&bootstrap-port=8998`; `pd-pair-key`
(default `static`) limits which prefill and decode engines pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from phalanx.router.endpoints import DEFAULT_BOOTSTRAP_PORT, PD_PROTOCOLS, PD_ROLES, Endpoint

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
        if parts.path not in ("", "/") or parts.fragment:
            raise BackendURLError(
                f"--backend {raw!r}: give the server's root (requests keep their own /v1/... path)"
            )
        pd = _pd_fields(raw, parts.query)
        url = f"{parts.scheme}://{parts.netloc}"
        name = parts.netloc
        if name in seen:
            raise BackendURLError(f"--backend {raw!r}: given twice")
        seen.add(name)
        if port is None:
            url = f"{url}:{443 if parts.scheme == 'https' else 80}"
        endpoints.append(Endpoint(name=name, url=url, serving=STATIC_SERVING, group_index=index, **pd))
    return endpoints


_PD_KEYS = ("pd-role", "pd-protocol", "pd-pair-key", "bootstrap-port")


def _pd_fields(raw: str, query: str) -> dict[str, Any]:
    """The prefill/decode fields a `--backend` URL's query string gives (empty: aggregated)."""
    if not query:
        return {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise BackendURLError(f"--backend {raw!r}: the query string is not key=value pairs") from None
    given = dict(pairs)
    unknown = sorted(set(given) - set(_PD_KEYS))
    if unknown or len(given) != len(pairs):
        what = f"unknown key {unknown[0]!r}" if unknown else "a key given twice"
        raise BackendURLError(f"--backend {raw!r}: {what}; the query may set {', '.join(_PD_KEYS)}")
    role = given.get("pd-role")
    if role not in PD_ROLES:
        raise BackendURLError(f"--backend {raw!r}: pd-role must be prefill or decode, got {role!r}")
    protocol = given.get("pd-protocol", "vllm")
    if protocol not in PD_PROTOCOLS:
        raise BackendURLError(f"--backend {raw!r}: pd-protocol must be vllm or sglang, got {protocol!r}")
    fields: dict[str, Any] = {
        "pd_role": role,
        "pd_protocol": protocol,
        "pd_pair_key": given.get("pd-pair-key") or STATIC_SERVING,
    }
    port_text = given.get("bootstrap-port")
    if port_text is not None:
        if protocol != "sglang" or role != "prefill":
            raise BackendURLError(f"--backend {raw!r}: bootstrap-port is for SGLang prefill engines only")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise BackendURLError(f"--backend {raw!r}: bootstrap-port must be a number from 1 to 65535")
        fields["bootstrap_port"] = int(port_text)
    elif protocol == "sglang" and role == "prefill":
        fields["bootstrap_port"] = DEFAULT_BOOTSTRAP_PORT
    return fields
