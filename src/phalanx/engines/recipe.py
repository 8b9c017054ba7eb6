"""What every engine recipe produces, and the pod parts they share.

A recipe turns a plan into the pod templates of one role instance: the entry pod (engine head,
serves HTTP) and the worker pods (join the head). Recipes are pure: same inputs, same templates.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from phalanx.api.argv import flag_named, option_name
from phalanx.planner.types import GiB, Plan

HTTP_PORT = 8000
CONTAINER_NAME = "engine"
GPU_RESOURCE = "nvidia.com/gpu"
# Model load time grows with weight size; the startup probe must outlast it (KAITO uses the same
# shape: 15 min plus 18 s per GiB, between 30 and 180 min).
_LOAD_BASE_SECONDS = 15 * 60
_LOAD_SECONDS_PER_GIB = 18
_LOAD_MIN_SECONDS, _LOAD_MAX_SECONDS = 30 * 60, 180 * 60
_PROBE_PERIOD_SECONDS = 10


PdKind = Literal["prefill", "decode"]
# vLLM's NIXL side channel (VLLM_NIXL_SIDE_CHANNEL_PORT; data-parallel rank r listens on this + r).
NIXL_SIDE_CHANNEL_PORT = 5600
SGLANG_BOOTSTRAP_PORT = 8998  # SGLang's default --disaggregation-bootstrap-port
P2P_NCCL_PORT = 21001  # P2pNcclConnector's kv_port, as vLLM's examples use it
LMCACHE_PEER_INIT_PORT, LMCACHE_PEER_ALLOC_PORT = 7300, 7400  # decode side, LMCache's example ports
LMCACHE_PD_BUFFER_BYTES = 1 << 30
PYTHON_HASH_SEED = "0"  # LMCache keys chunks by Python's hash: both sides must agree


@dataclass(frozen=True)
class PdRole:
    """What a prefill or decode role instance needs to hand its KV cache over."""

    kind: PdKind
    connector: str  # nixl | lmcache | p2pnccl (vLLM, sim) or mooncake | nixl (SGLang)
    bootstrap_port: int = SGLANG_BOOTSTRAP_PORT
    proxy: str | None = None  # p2pnccl: host:port of the proxy the engines register with
    # One prompt token's KV in the whole model (all layers and heads that attend to every token): what a
    # transfer moves per token. Only the simulator is told; a real engine knows its own.
    kv_bytes_per_token: int = 0


@dataclass(frozen=True)
class EngineInputs:
    plan: Plan
    model_id: str  # what the engine loads: a Hugging Face id or a path
    served_name: str  # the `model` clients ask for
    image: str
    launcher: str = "ray"
    engine_args: tuple[str, ...] = ()
    env: tuple[dict[str, Any], ...] = ()
    model_access_secret: str | None = None
    model_revision: str | None = None
    request_gpus: bool = True
    pd: PdRole | None = None  # None: an aggregated role (prefill and decode in one engine)


@dataclass(frozen=True)
class ArgProblem:
    """A user engine argument that would undo how the recipe wires the pod."""

    index: int  # in engineArgs
    token: str
    message: str
    fix: str


@dataclass(frozen=True)
class RoleRecipe:
    """The pod templates of one role instance plus what a reader of the plan should know."""

    entry: dict[str, Any]
    worker: dict[str, Any] | None
    worker_replicas: int
    port: int = HTTP_PORT
    notes: tuple[str, ...] = field(default=())
    refused: tuple[ArgProblem, ...] = field(default=())  # engineArgs that would break the wiring


def load_timeout_seconds(plan: Plan) -> int:
    weights_gib = plan.memory.weights * plan.total_gpus / GiB
    seconds = _LOAD_BASE_SECONDS + int(weights_gib * _LOAD_SECONDS_PER_GIB)
    return max(_LOAD_MIN_SECONDS, min(_LOAD_MAX_SECONDS, seconds))


@dataclass(frozen=True)
class Probes:
    """The HTTP paths that tell whether an engine has started, can take requests, and is alive."""

    startup: str
    readiness: str
    liveness: str
    liveness_timeout_seconds: int = 5
    readiness_timeout_seconds: int = 2


# vLLM binds its port long before the model is loaded; /health answers 200 once it can serve.
VLLM_PROBES = Probes(startup="/health", readiness="/health", liveness="/health")
# SGLang 0.5.23: /ready is 200 once the warm-up request has passed and the server is not paused or
# unhealthy, without generating; /health generates one token and waits up to 20 s for it
# (SGLANG_HEALTH_CHECK_TIMEOUT), so only the rarer liveness probe asks it, with a timeout beyond that.
SGLANG_HEALTH_SECONDS = 20
SGLANG_PROBES = Probes(
    startup="/ready",
    readiness="/ready",
    liveness="/health",
    liveness_timeout_seconds=SGLANG_HEALTH_SECONDS + 10,
    readiness_timeout_seconds=5,
)


def http_probes(plan: Plan, probes: Probes = VLLM_PROBES) -> dict[str, Any]:
    """Probes on the entry's HTTP paths, not a TCP connect: an engine listens before it can serve."""

    def get(path: str) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": "http"}}

    return {
        "startupProbe": {
            **get(probes.startup),
            "periodSeconds": _PROBE_PERIOD_SECONDS,
            "timeoutSeconds": 5,
            "failureThreshold": math.ceil(load_timeout_seconds(plan) / _PROBE_PERIOD_SECONDS),
        },
        "readinessProbe": {
            **get(probes.readiness),
            "periodSeconds": 5,
            "timeoutSeconds": probes.readiness_timeout_seconds,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            **get(probes.liveness),
            # A check must end before the next one starts.
            "periodSeconds": max(10, probes.liveness_timeout_seconds),
            "timeoutSeconds": probes.liveness_timeout_seconds,
            "failureThreshold": 6 if probes.liveness_timeout_seconds <= 10 else 3,
        },
    }


def base_env(inputs: EngineInputs) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    if inputs.model_access_secret:
        env.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": inputs.model_access_secret, "key": "HF_TOKEN"}},
            }
        )
    return env + [dict(item) for item in inputs.env]


def gpu_resources(inputs: EngineInputs) -> dict[str, Any]:
    if not inputs.request_gpus or inputs.plan.gpus_per_node == 0:
        return {}
    count = str(inputs.plan.gpus_per_node)
    return {"resources": {"limits": {GPU_RESOURCE: count}, "requests": {GPU_RESOURCE: count}}}


def shared_memory_volume() -> tuple[dict[str, Any], dict[str, Any]]:
    """NCCL and the engines' worker processes exchange tensors through /dev/shm."""
    volume = {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}
    mount = {"name": "dshm", "mountPath": "/dev/shm"}
    return volume, mount


def pod_template(
    inputs: EngineInputs,
    *,
    command: list[str],
    args: list[str] | None = None,
    serves_http: bool,
    extra_env: list[dict[str, Any]] | None = None,
    shared_memory: bool = True,
    extra_ports: list[dict[str, Any]] | None = None,
    probes: Probes = VLLM_PROBES,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": CONTAINER_NAME, "image": inputs.image, "command": command}
    if args:
        container["args"] = args
    container["env"] = base_env(inputs) + list(extra_env or [])
    ports = [{"name": "http", "containerPort": HTTP_PORT}] if serves_http else []
    ports += extra_ports or []
    if ports:
        container["ports"] = ports
    container.update(gpu_resources(inputs))
    if serves_http:
        container.update(http_probes(inputs.plan, probes))
    spec: dict[str, Any] = {"containers": [container]}
    if shared_memory:
        volume, mount = shared_memory_volume()
        container["volumeMounts"] = [mount]
        spec["volumes"] = [volume]
    return {"spec": spec}


def overridden_flags(engine_args: tuple[str, ...], generated: set[str]) -> list[str]:
    """Generated flags that user engine arguments override (the last value wins in argparse), also
    when abbreviated: the engines' parsers take a unique prefix of a flag as that flag."""
    named = (flag_named(arg, generated) or _short_flag(arg, generated) for arg in engine_args)
    return sorted({flag for flag in named if flag is not None})


def _short_flag(arg: str, flags: set[str]) -> str | None:
    """`-tp 4`: short flags are matched as written (argparse does not abbreviate them)."""
    name = arg.split("=", 1)[0]
    return name if name.startswith("-") and name in flags else None


# Flags every engine pod serving HTTP is wired by, and those that join a multi-node role instance.
HTTP_WIRED = ("--port", "--host", "--served-model-name")
NODES_WIRED = ("--nnodes", "--node-rank")
# What relies on each flag a recipe wires a pod by.
WIRED_BY: dict[str, str] = {
    "--port": f"the probes and the router use the container port named http ({HTTP_PORT})",
    "--host": "the probes and the router reach the engine on the pod's IP",
    "--served-model-name": "the router sends a model's requests to the pods that serve its name",
    "--nnodes": "Phalanx starts one engine process per node of a role instance and joins them",
    "--node-rank": "each pod of a role instance is given its node rank",
    "--master-addr": "the worker pods join the entry pod at its address",
    "--master-port": "the worker pods join the entry pod on this port",
    "--dist-init-addr": "the worker pods join the entry pod at this address",
    "--nccl-init-addr": "the worker pods join the entry pod at this address (SGLang's --dist-init-addr)",
    "--headless": "only the worker pods run without an API server",
    "--join-port": "the worker pods join the entry pod on this port",
    "--kv-transfer-config": "it sets the role's prefill or decode side and the KV connector, which "
    "the role's labels and its peers rely on (set them in spec.disaggregation)",
    "--disaggregation-mode": "it sets the role's prefill or decode side, which the role's labels and "
    "its peers rely on",
    "--disaggregation-transfer-backend": "prefill and decode must use the same backend (spec.disaggregation"
    ".connector)",
    "--disaggregation-bootstrap-port": "decode pods fetch the KV cache from the bootstrap port the "
    "prefill pods are labelled with",
}
# Values that keep the wiring: restating the port, binding every interface.
_KEEPS_WIRING: dict[str, frozenset[str]] = {
    "--port": frozenset({str(HTTP_PORT)}),
    "--host": frozenset({"0.0.0.0", "::"}),
}
_WIRED_FIX = {
    "--port": f"remove it: the engine serves on port {HTTP_PORT} (container port http)",
    "--host": "remove it: the engine listens on every interface of the pod",
    "--served-model-name": "remove it and set spec.model.servedName",
    "--kv-transfer-config": "remove it: spec.disaggregation.connector picks the connector, each role's side "
    "is set for it",
    "--disaggregation-mode": "remove it: spec.disaggregation gives each role its side",
    "--disaggregation-transfer-backend": "remove it and set spec.disaggregation.connector",
    "--disaggregation-bootstrap-port": "remove it: prefill pods serve the bootstrap on "
    f"{SGLANG_BOOTSTRAP_PORT} and are labelled with it",
}


def wiring_overrides(engine_args: tuple[str, ...], wired: tuple[str, ...]) -> list[ArgProblem]:
    """engineArgs that set a flag of `wired` (see WIRED_BY), in full or abbreviated."""
    problems: list[ArgProblem] = []
    for index, token in enumerate(engine_args):
        flag = flag_named(token, wired)
        if flag is None:
            continue
        value = _value(engine_args, index)
        if value in _KEEPS_WIRING.get(flag, frozenset()):
            continue
        shown = token if "=" in token or value is None else f"{token} {value}"
        fix = _WIRED_FIX.get(flag, "remove it: Phalanx sets it from the plan's nodes")
        if flag != (option_name(token) or "").partition(".")[0]:
            shown = f"{shown}, an abbreviation the engine takes as {flag}"
        problems.append(
            ArgProblem(index, token, f"sets {flag} ({shown}), which Phalanx wires: {WIRED_BY[flag]}", fix)
        )
    return problems


def _value(engine_args: tuple[str, ...], index: int) -> str | None:
    token = engine_args[index]
    if "=" in token:
        return token.partition("=")[2]
    following = engine_args[index + 1] if index + 1 < len(engine_args) else None
    return following if following is not None and not following.startswith("-") else None


_VLLM_CONNECTOR = {"nixl": "NixlConnector", "lmcache": "LMCacheConnectorV1", "p2pnccl": "P2pNcclConnector"}


def kv_transfer_config(pd: PdRole) -> str:
    """vLLM's --kv-transfer-config for one side (compact JSON, keys in a fixed order)."""
    config: dict[str, Any] = {
        "kv_connector": _VLLM_CONNECTOR[pd.connector],
        "kv_role": "kv_producer" if pd.kind == "prefill" else "kv_consumer",
    }
    if pd.connector == "nixl":
        # A lease that expired or a block that cannot be read is an error, never a silent recompute.
        config["kv_load_failure_policy"] = "fail"
    elif pd.connector == "lmcache":
        rpc = "producer1" if pd.kind == "prefill" else "consumer1"
        config["kv_connector_extra_config"] = {"discard_partial_chunks": False, "lmcache_rpc_port": rpc}
    else:
        host, _, port = (pd.proxy or "").rpartition(":")
        # Numbers, as KVTransferConfig types them; prefill only sends, so its buffer is token-sized.
        config["kv_buffer_size"] = 1e1 if pd.kind == "prefill" else 8e9
        config["kv_port"] = P2P_NCCL_PORT
        config["kv_connector_extra_config"] = {
            "proxy_ip": host,
            "proxy_port": port,
            "http_port": str(HTTP_PORT),
            "send_type": "PUT_ASYNC",
        }
    return json.dumps(config, separators=(",", ":"))


def _env(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def pod_ip_env(name: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}


def vllm_pd_env(pd: PdRole) -> list[dict[str, Any]]:
    """The env a vLLM connector reads besides --kv-transfer-config."""
    if pd.connector == "nixl":
        return [
            pod_ip_env("VLLM_NIXL_SIDE_CHANNEL_HOST"),
            _env("VLLM_NIXL_SIDE_CHANNEL_PORT", str(NIXL_SIDE_CHANNEL_PORT)),
        ]
    if pd.connector != "lmcache":
        return []
    env = [
        _env("PYTHONHASHSEED", PYTHON_HASH_SEED),
        _env("LMCACHE_ENABLE_PD", "True"),
        _env("LMCACHE_TRANSFER_CHANNEL", "nixl"),
        _env("LMCACHE_PD_ROLE", "sender" if pd.kind == "prefill" else "receiver"),
        _env("LMCACHE_PD_BUFFER_SIZE", str(LMCACHE_PD_BUFFER_BYTES)),
        _env("LMCACHE_PD_BUFFER_DEVICE", "cuda"),
        _env("LMCACHE_LOCAL_CPU", "False"),
    ]
    if pd.kind == "prefill":
        # The router drives the flow over HTTP; LMCache's own ZMQ proxy is not there to notify.
        return [*env, _env("LMCACHE_PD_SKIP_PROXY_NOTIFICATION", "True")]
    return [
        *env,
        pod_ip_env("LMCACHE_PD_PEER_HOST"),
        _env("LMCACHE_PD_PEER_INIT_PORT", str(LMCACHE_PEER_INIT_PORT)),
        _env("LMCACHE_PD_PEER_ALLOC_PORT", str(LMCACHE_PEER_ALLOC_PORT)),
    ]


def vllm_pd_ports(pd: PdRole) -> list[dict[str, Any]]:
    """Container ports the connector listens on (named, so Services and peers can find them)."""
    if pd.connector == "nixl":
        return [{"name": "nixl", "containerPort": NIXL_SIDE_CHANNEL_PORT}]
    if pd.connector == "p2pnccl":
        return [{"name": "p2p-nccl", "containerPort": P2P_NCCL_PORT}]
    if pd.kind == "decode":
        return [
            {"name": "lmcache-init", "containerPort": LMCACHE_PEER_INIT_PORT},
            {"name": "lmcache-alloc", "containerPort": LMCACHE_PEER_ALLOC_PORT},
        ]
    return []
