"""Prefill/decode ModelServings in the shapes Kthena's own PD examples take, written here as plain
data: the engine command inside an `sh -c` script, a Ray-launched multi-node role per side, SGLang
flags as an argument list, an engine after a sidecar container with only `args` (the image's
entrypoint), and a mock engine whose roles are named prefill and decode but carry no PD flags.
Each builder returns a fresh dict; tests change one field to break one rule."""

from __future__ import annotations

import json
from typing import Any

Spec = dict[str, Any]

API_VERSION = "serving.phalanx.dev/v1alpha1"
VLLM_IMAGE = "vllm/vllm-openai:v0.33.0"
SGLANG_IMAGE = "lmsysorg/sglang:v0.5.23"


def kv_config(kv_role: str, connector: str = "NixlConnector") -> str:
    return json.dumps({"kv_connector": connector, "kv_role": kv_role}, separators=(",", ":"))


def _serving(name: str, roles: list[Spec], **spec: Any) -> Spec:
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelServing",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": 1, "template": {"roles": roles}, **spec},
    }


def _pod(containers: list[Spec]) -> Spec:
    return {"spec": {"containers": containers}}


def _vllm_script(kv_role: str) -> str:
    # Line continuations and a single-quoted JSON value, as a shell reads them.
    return (
        "python3 -m vllm.entrypoints.openai.api_server \\\n"
        '  --host "0.0.0.0" --port "8000" \\\n'
        "  --model /models/tiny --served-model-name tiny \\\n"
        f"  --kv-transfer-config '{kv_config(kv_role)}'\n"
    )


def _vllm_shell_container(name: str, kv_role: str) -> Spec:
    return {
        "name": name,
        "image": VLLM_IMAGE,
        "command": ["sh", "-c"],
        "args": [_vllm_script(kv_role)],
        "env": [{"name": "VLLM_NIXL_SIDE_CHANNEL_PORT", "value": "5600"}],
        "ports": [{"containerPort": 8000, "name": "http"}],
        "resources": {"limits": {"nvidia.com/gpu": 1}},
    }


def vllm_nixl() -> Spec:
    """One prefill and one decode pod, vLLM with NixlConnector started from a shell script."""
    roles = [
        {
            "name": side,
            "replicas": 1,
            "workerReplicas": 0,
            "entryTemplate": _pod([_vllm_shell_container(side, role)]),
        }
        for side, role in (("prefill", "kv_producer"), ("decode", "kv_consumer"))
    ]
    return _serving("qwen-pd", roles, recoveryPolicy="ServingGroupRecreate")


def vllm_multinode() -> Spec:
    """Each side two nodes: a Ray head that then starts vLLM, and a worker joining the head."""

    def entry(kv_role: str) -> Spec:
        script = (
            "set -e\n"
            'bash /opt/ray-cluster.sh leader --size="${GROUP_SIZE}"\n'
            "python3 -m vllm.entrypoints.openai.api_server --model /models/m \\\n"
            "  --pipeline_parallel_size 2 --distributed_executor_backend ray \\\n"
            f"  --kv-transfer-config '{kv_config(kv_role)}'\n"
        )
        return _pod([{"name": "leader", "image": VLLM_IMAGE, "command": ["sh", "-c"], "args": [script]}])

    worker = _pod(
        [
            {
                "name": "worker",
                "image": VLLM_IMAGE,
                "command": ["sh", "-c"],
                "args": ['bash /opt/ray-cluster.sh worker --address="${ENTRY_ADDRESS}"'],
            }
        ]
    )
    roles = [
        {
            "name": side,
            "replicas": replicas,
            "workerReplicas": 1,
            "entryTemplate": entry(role),
            "workerTemplate": worker,
        }
        for side, role, replicas in (("prefill", "kv_producer", 1), ("decode", "kv_consumer", 2))
    ]
    return _serving("pd-multinode", roles)


def sglang(bootstrap_port: int | None = None) -> Spec:
    """SGLang with the mooncake transfer backend, flags as an argument list."""

    def container(mode: str) -> Spec:
        args = ["--model-path", "Qwen/Qwen3-0.6B", "--port", "30000", "--disaggregation-mode", mode]
        args += ["--disaggregation-transfer-backend", "mooncake"]
        if bootstrap_port is not None and mode == "prefill":
            args += ["--disaggregation-bootstrap-port", str(bootstrap_port)]
        return {
            "name": f"sglang-{mode}",
            "image": SGLANG_IMAGE,
            "command": ["python3", "-m", "sglang.launch_server"],
            "args": args,
            "ports": [{"containerPort": 30000, "name": "http"}],
        }

    roles = [
        {"name": mode, "replicas": 1, "workerReplicas": 0, "entryTemplate": _pod([container(mode)])}
        for mode in ("prefill", "decode")
    ]
    return _serving("sglang-pd", roles)


def sidecar_first() -> Spec:
    """A metrics sidecar declares the first port; the engine runs the image's entrypoint with args."""

    def containers(kv_role: str) -> list[Spec]:
        sidecar = {
            "name": "runtime",
            "image": "example.com/runtime:1",
            "args": ["--port", "8100", "--engine", "vllm", "--engine-base-url", "http://localhost:8000"],
            "ports": [{"containerPort": 8100}],
        }
        engine = {
            "name": "vllm",
            "image": VLLM_IMAGE,
            "args": [
                "/models/m",
                "--tensor-parallel-size",
                "2",
                "--kv-transfer-config",
                kv_config(kv_role, "MooncakeConnectorV1"),
            ],
            "ports": [{"containerPort": 8000}],
        }
        return [sidecar, engine]

    roles = [
        {"name": side, "replicas": 1, "entryTemplate": _pod(containers(role))}
        for side, role in (("prefill", "kv_producer"), ("decode", "kv_consumer"))
    ]
    return _serving("ascend-pd", roles)


def named_only() -> Spec:
    """Roles named prefill and decode running a mock engine that is given no PD flags."""
    roles = [
        {
            "name": side,
            "replicas": 1,
            "entryTemplate": {
                "metadata": {"labels": {"app": "mock", "example.com/side": side}},
                "spec": {
                    "containers": [
                        {
                            "name": "leader",
                            "image": "example.com/mocker:1",
                            "ports": [{"containerPort": 8000}],
                        }
                    ]
                },
            },
        }
        for side in ("prefill", "decode")
    ]
    return _serving("mocked", roles)


def role(spec: Spec, index: int) -> Spec:
    result: Spec = spec["spec"]["template"]["roles"][index]
    return result


def engine_container(spec: Spec, index: int) -> Spec:
    """The container that runs the engine in role `index`'s entry template (the last one)."""
    result: Spec = role(spec, index)["entryTemplate"]["spec"]["containers"][-1]
    return result
