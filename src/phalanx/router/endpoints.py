"""What the router knows about one serving group's entry pod, as plain data pushed in by discovery."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

PdRole = Literal["prefill", "decode"]
PdProtocol = Literal["vllm", "sglang"]
PD_ROLES: Final = ("prefill", "decode")
PD_PROTOCOLS: Final = ("vllm", "sglang")
# SGLang's own default for --disaggregation-bootstrap-port.
DEFAULT_BOOTSTRAP_PORT: Final = 8998


@dataclass(frozen=True)
class Endpoint:
    """One HTTP entry pod of a serving group.

    `models` empty means "ask the endpoint": the router learns them from its `GET /v1/models`.

    Prefill/decode disaggregation: `pd_role` None is an aggregated engine (it serves whole
    requests); a prefill endpoint pairs only with decode endpoints of the same `pd_pair_key` and
    `pd_protocol` (vLLM's `kv_transfer_params`, or SGLang's bootstrap). `bootstrap_port` is where an
    SGLang prefill engine's bootstrap server listens.
    """

    name: str
    url: str
    serving: str
    group_index: int
    models: tuple[str, ...] = ()
    ready: bool = True
    draining: bool = False
    pd_role: PdRole | None = None
    pd_protocol: PdProtocol = "vllm"
    pd_pair_key: str = ""
    bootstrap_port: int | None = None
    health_path: str = "/health"  # what the active health check asks (the pod's readiness probe)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("an endpoint needs a name")
        if self.pd_role is not None and self.pd_role not in PD_ROLES:
            raise ValueError(f"endpoint {self.name}: pd_role must be prefill or decode, got {self.pd_role!r}")
        if self.pd_protocol not in PD_PROTOCOLS:
            raise ValueError(
                f"endpoint {self.name}: pd_protocol must be vllm or sglang, got {self.pd_protocol!r}"
            )
        if self.bootstrap_port is not None and not 0 < self.bootstrap_port < 65536:
            raise ValueError(
                f"endpoint {self.name}: bootstrap_port must be 1..65535, got {self.bootstrap_port}"
            )
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
