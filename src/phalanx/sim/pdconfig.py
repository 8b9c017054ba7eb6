"""The prefill/decode settings of `phalanx sim`, read from the real engines' own flags; pure.

vLLM: `--kv-transfer-config JSON` and `VLLM_NIXL_SIDE_CHANNEL_HOST`/`_PORT`. SGLang:
`--disaggregation-mode`, `--disaggregation-transfer-backend`, `--disaggregation-bootstrap-port` and
`SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT`/`_WAITING_TIMEOUT`. Every problem is a `ValueError` whose
message names the field, the bad value and what is accepted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The vLLM connectors the simulator answers for; all speak the pull protocol of NixlConnector here.
KV_CONNECTORS = ("NixlConnector", "LMCacheConnectorV1", "P2pNcclConnector")
KV_ROLES = ("kv_producer", "kv_consumer", "kv_both")
LOAD_FAILURE_POLICIES = ("fail", "recompute")  # vLLM's kv_load_failure_policy; "fail" is its default
DEFAULT_LEASE_SECONDS = 30.0  # vLLM's kv_lease_duration default (NixlConnector)
DEFAULT_SIDE_CHANNEL_HOST = "localhost"  # vLLM's VLLM_NIXL_SIDE_CHANNEL_HOST default
DEFAULT_SIDE_CHANNEL_PORT = 5600  # vLLM's VLLM_NIXL_SIDE_CHANNEL_PORT default

SGLANG_MODES = ("null", "prefill", "decode")
SGLANG_BACKENDS = ("mooncake", "nixl")
DEFAULT_BOOTSTRAP_PORT = 8998
DEFAULT_SGLANG_TIMEOUT = 300.0  # SGLang's SGLANG_DISAGGREGATION_BOOTSTRAP_/WAITING_TIMEOUT default

# The config keys vLLM's KVTransferConfig has; an unknown key is refused there too.
_KNOWN_KEYS = frozenset(
    {
        "kv_connector",
        "engine_id",
        "kv_buffer_device",
        "kv_buffer_size",
        "kv_role",
        "kv_rank",
        "kv_parallel_size",
        "kv_ip",
        "kv_port",
        "kv_connector_extra_config",
        "kv_connector_module_path",
        "enable_permute_local_kv",
        "kv_load_failure_policy",
    }
)


@dataclass(frozen=True)
class KvTransfer:
    """vLLM flavour: what `--kv-transfer-config` asked for, and where the side channel listens."""

    connector: str
    role: str
    engine_id: str | None
    lease_seconds: float
    load_failure_policy: str
    side_channel_host: str
    side_channel_port: int


@dataclass(frozen=True)
class SglangDisaggregation:
    """SGLang flavour: one side of a disaggregated pair."""

    mode: str  # prefill | decode
    backend: str
    bootstrap_port: int
    bootstrap_timeout: float  # prefill: how long it waits for decode to connect
    waiting_timeout: float  # decode: how long it waits for prefill's KV


def _choice(value: Any, field: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{field} is {value!r}; use one of {', '.join(allowed)}")
    return value


def _seconds(value: Any, field: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{field} is {value!r}; use a number of seconds > 0")
    return float(value)


def parse_port(raw: str, field: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"{field}={raw!r} is not a TCP port; use an integer in 1..65535") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{field}={port} is not a TCP port; use an integer in 1..65535")
    return port


def parse_kv_transfer_config(raw: str, env: Mapping[str, str]) -> KvTransfer:
    """`--kv-transfer-config` as vLLM reads it (a JSON object), plus the side-channel environment."""
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"--kv-transfer-config is not JSON ({exc}); pass a JSON object") from None
    if not isinstance(config, dict):
        raise ValueError(f"--kv-transfer-config is {raw!r}; pass a JSON object")
    problems: list[str] = []
    unknown = sorted(set(config) - _KNOWN_KEYS)
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)}; vLLM accepts {', '.join(sorted(_KNOWN_KEYS))}")
    values: dict[str, Any] = {}
    checks = (
        ("connector", "kv_connector", None, KV_CONNECTORS),
        ("role", "kv_role", None, KV_ROLES),
        ("policy", "kv_load_failure_policy", "fail", LOAD_FAILURE_POLICIES),
    )
    for key, name, default, allowed in checks:
        try:
            values[key] = _choice(config.get(name, default), name, allowed)
        except ValueError as exc:
            problems.append(str(exc))
    extra = config.get("kv_connector_extra_config", {})
    lease = DEFAULT_LEASE_SECONDS
    if not isinstance(extra, dict):
        problems.append(f"kv_connector_extra_config is {extra!r}; use a JSON object")
    elif "kv_lease_duration" in extra:
        try:
            lease = _seconds(extra["kv_lease_duration"], "kv_connector_extra_config.kv_lease_duration")
        except ValueError as exc:
            problems.append(str(exc))
    engine_id = config.get("engine_id")
    if engine_id is not None and (not isinstance(engine_id, str) or not engine_id):
        problems.append(f"engine_id is {engine_id!r}; use a non-empty string or leave it out")
    port = DEFAULT_SIDE_CHANNEL_PORT
    raw_port = env.get("VLLM_NIXL_SIDE_CHANNEL_PORT", "").strip()
    if raw_port:
        try:
            port = parse_port(raw_port, "VLLM_NIXL_SIDE_CHANNEL_PORT")
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("--kv-transfer-config: " + "; ".join(problems))
    return KvTransfer(
        connector=values["connector"],
        role=values["role"],
        engine_id=engine_id,
        lease_seconds=lease,
        load_failure_policy=values["policy"],
        side_channel_host=env.get("VLLM_NIXL_SIDE_CHANNEL_HOST", "").strip() or DEFAULT_SIDE_CHANNEL_HOST,
        side_channel_port=port,
    )


def _env_seconds(env: Mapping[str, str], name: str) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return DEFAULT_SGLANG_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None
    return _seconds(value, name)


def parse_sglang(
    mode: str, backend: str, bootstrap_port: int, env: Mapping[str, str]
) -> SglangDisaggregation | None:
    """SGLang's disaggregation flags; None for mode `null` (aggregated, SGLang's default)."""
    _choice(mode, "--disaggregation-mode", SGLANG_MODES)
    _choice(backend, "--disaggregation-transfer-backend", SGLANG_BACKENDS)
    if mode == "null":
        return None
    return SglangDisaggregation(
        mode=mode,
        backend=backend,
        bootstrap_port=bootstrap_port,
        bootstrap_timeout=_env_seconds(env, "SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT"),
        waiting_timeout=_env_seconds(env, "SGLANG_DISAGGREGATION_WAITING_TIMEOUT"),
    )


def transfer_seconds(num_bytes: int, bandwidth_gb_s: float) -> float:
    """Time to move `num_bytes` at `bandwidth_gb_s` (10^9 bytes per second); 0 bandwidth = instant."""
    if bandwidth_gb_s <= 0:
        return 0.0
    return num_bytes / (bandwidth_gb_s * 1e9)


class TransferLink:
    """The decode engine's network link: transfers go one after another (a FIFO), so a burst of
    long prompts queues on the wire as it would on a NIC. Pure: the caller passes the time."""

    def __init__(self, bandwidth_gb_s: float) -> None:
        self.bandwidth_gb_s = bandwidth_gb_s
        self._free_at = 0.0

    def book(self, now: float, num_bytes: int) -> float:
        """Reserve the link for `num_bytes`; returns when the transfer ends."""
        start = max(now, self._free_at)
        self._free_at = start + transfer_seconds(num_bytes, self.bandwidth_gb_s)
        return self._free_at
