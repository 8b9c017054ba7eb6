"""ModelServings whose pods run what LeaderWorkerSet's example workloads run, in our own words.

Each mimics one LWS example (vLLM on GPUs with Ray, SGLang, llama.cpp's leader with RPC workers,
TensorRT-LLM with its kubectl-driven leader): the same variables, the same downward-API label,
the same shell and `$(VAR)` use, so a test can show they work unchanged inside a Phalanx role
instance. `llamacpp_rpc_hosts` and `tensorrt_selector` restate what those programs do at run time.
"""

from __future__ import annotations

import re
from typing import Any

from phalanx.api import ModelServing, parse_resource

Spec = dict[str, Any]

NAMESPACE = "team-a"


def _serving(name: str, workers: int, entry: Spec, worker: Spec) -> ModelServing:
    def template(container: Spec) -> Spec:
        return {"spec": {"containers": [container]}}

    data = {
        "apiVersion": "serving.phalanx.dev/v1alpha1",
        "kind": "ModelServing",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": 2,
            "schedulerName": "default-scheduler",
            "template": {
                "roles": [
                    {
                        "name": "engine",
                        "replicas": 2,  # two role instances per group: names must not cross over
                        "workerReplicas": workers,
                        "entryTemplate": template(entry),
                        "workerTemplate": template(worker),
                    }
                ]
            },
        },
    }
    ms, problems = parse_resource(data)
    assert isinstance(ms, ModelServing), [p.render() for p in problems]
    return ms


def vllm_ray() -> ModelServing:
    """Ray head on the entry (cluster size from the group size), Ray workers join its address."""
    head = (
        "bash /workspace/ray-node.sh head --cluster-size=$(LWS_GROUP_SIZE); "
        "python3 -m vllm.entrypoints.openai.api_server --port 8080 --tensor-parallel-size 8 "
        "--pipeline-parallel-size 2"
    )
    join = "bash /workspace/ray-node.sh join --head-address=$(LWS_LEADER_ADDRESS)"
    entry = {"name": "head", "image": "vllm/vllm-openai", "command": ["sh", "-c", head]}
    worker = {"name": "node", "image": "vllm/vllm-openai", "command": ["sh", "-c", join]}
    return _serving("vllm", 1, entry, worker)


def sglang() -> ModelServing:
    """Every pod runs the same server; rank, node count and rendezvous come from LWS_*."""

    def command(extra: list[str]) -> list[str]:
        return [
            "python3",
            "-m",
            "sglang.launch_server",
            "--tp",
            "2",
            "--dist-init-addr",
            "$(LWS_LEADER_ADDRESS):20000",
            "--nnodes",
            "$(LWS_GROUP_SIZE)",
            "--node-rank",
            "$(LWS_WORKER_INDEX)",
            *extra,
        ]

    entry = {"name": "server", "image": "lmsysorg/sglang", "command": command(["--port", "40000"])}
    worker = {"name": "server", "image": "lmsysorg/sglang", "command": command([])}
    return _serving("sglang", 1, entry, worker)


def llamacpp() -> ModelServing:
    """The leader program reads LWS_GROUP_SIZE and LWS_LEADER_ADDRESS itself (see below)."""
    entry = {
        "name": "leader",
        "image": "llamacpp-leader",
        "command": ["/llamacpp-leader", "--", "-ngl", "99"],
    }
    worker = {"name": "rpc", "image": "llamacpp-worker", "args": ["--host", "0.0.0.0"]}
    return _serving("llamacpp", 4, entry, worker)


def tensorrt() -> ModelServing:
    """The leader finds its group's pods by LWS's group-key label, read through the downward API."""
    key_ref = {"fieldRef": {"fieldPath": "metadata.labels['leaderworkerset.sigs.k8s.io/group-key']"}}
    leader = "python3 ./server.py leader --stateful_set_group_key=${GROUP_KEY} --pp=2 --tp=8 --gpu_per_node=8"
    entry = {
        "name": "leader",
        "image": "trtllm",
        "command": ["sh", "-c", leader],
        "env": [{"name": "GROUP_KEY", "valueFrom": key_ref}],
    }
    worker = {"name": "worker", "image": "trtllm", "command": ["sh", "-c", "python3 ./server.py worker"]}
    return _serving("tensorrt", 1, entry, worker)


def llamacpp_rpc_hosts(env: dict[str, str]) -> list[str]:
    """The llama.cpp leader's derivation: worker i of a group of size N (i = 1..N-1) is the first
    DNS label of LWS_LEADER_ADDRESS, then `-i`, then the rest of the address."""
    first, _, rest = env["LWS_LEADER_ADDRESS"].partition(".")
    return [f"{first}-{i}.{rest}" for i in range(1, int(env.get("LWS_GROUP_SIZE") or "1"))]


def tensorrt_selector(argv: list[str]) -> dict[str, str]:
    """The label selector the TensorRT-LLM leader passes to `kubectl get pods -l`."""
    (key,) = re.findall(r"--stateful_set_group_key=(\S+)", " ".join(argv))
    return {"leaderworkerset.sigs.k8s.io/group-key": key}


WORKLOADS = {"vllm": vllm_ray, "sglang": sglang, "llamacpp": llamacpp, "tensorrt": tensorrt}
