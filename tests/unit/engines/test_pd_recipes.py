"""Prefill and decode role recipes: every rendered PD argv pinned as an exact list, with its env and ports."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from phalanx import planner
from phalanx.engines import RECIPES, EngineInputs
from phalanx.engines.recipe import PdRole, kv_transfer_config
from phalanx.planner.types import PlanRequest
from tests.unit.engines.test_recipes import container


def one_gpu_plan() -> planner.Plan:
    return planner.make_plan(
        PlanRequest(
            model=planner.get_model("llama-3.1-8b-instruct"),
            shape=planner.shape_from_memory(1, "80Gi", "H100-80GB"),
            max_model_len=8192,
        )
    )


def inputs(pd: PdRole, **overrides: Any) -> EngineInputs:
    values: dict[str, Any] = {
        "plan": one_gpu_plan(),
        "model_id": "meta-llama/Llama-3.1-8B-Instruct",
        "served_name": "llama",
        "image": "img",
        "launcher": "native",
        "pd": pd,
    }
    values.update(overrides)
    return EngineInputs(**values)


def env(template: dict[str, Any] | None) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container(template)["env"]}


def ports(template: dict[str, Any] | None) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container(template).get("ports", [])}


POD_IP = {"fieldRef": {"fieldPath": "status.podIP"}}
VLLM_BASE = [
    "meta-llama/Llama-3.1-8B-Instruct",
    "--served-model-name",
    "llama",
    "--port",
    "8000",
    "--tensor-parallel-size",
    "1",
    "--pipeline-parallel-size",
    "1",
    "--max-model-len",
    "8192",
    "--gpu-memory-utilization",
    "0.9",
    "--dtype",
    "bfloat16",
]
NIXL_PRODUCER = '{"kv_connector":"NixlConnector","kv_role":"kv_producer","kv_load_failure_policy":"fail"}'
NIXL_CONSUMER = '{"kv_connector":"NixlConnector","kv_role":"kv_consumer","kv_load_failure_policy":"fail"}'


def test_plan_under_test_is_one_gpu_tp1() -> None:
    plan = one_gpu_plan()
    assert (plan.nodes, plan.tensor_parallel_size, plan.data_parallel_size) == (1, 1, 1)


@pytest.mark.parametrize(("kind", "config"), [("prefill", NIXL_PRODUCER), ("decode", NIXL_CONSUMER)])
def test_vllm_nixl_argv_env_and_side_channel_port(kind: str, config: str) -> None:
    recipe = RECIPES["vllm"](inputs(PdRole(kind=kind, connector="nixl")))  # type: ignore[arg-type]
    entry = container(recipe.entry)
    assert entry["command"] == ["vllm", "serve"]
    assert entry["args"] == [*VLLM_BASE, "--kv-transfer-config", config]
    found = env(recipe.entry)
    assert found["VLLM_NIXL_SIDE_CHANNEL_HOST"] == POD_IP  # the pod's own IP, from the downward API
    assert found["VLLM_NIXL_SIDE_CHANNEL_PORT"] == "5600"
    assert ports(recipe.entry) == {"http": 8000, "nixl": 5600}


def test_vllm_ray_launcher_on_one_node_runs_vllm_alone() -> None:
    # One node needs no Ray cluster (nor Ray in the image): the same pod as the native launcher's.
    ray = RECIPES["vllm"](inputs(PdRole(kind="prefill", connector="nixl"), launcher="ray"))
    native = RECIPES["vllm"](inputs(PdRole(kind="prefill", connector="nixl"), launcher="native"))
    assert ray.entry == native.entry
    assert container(ray.entry)["command"] == ["vllm", "serve"]


def test_vllm_ray_launcher_quotes_the_json_for_the_shell() -> None:
    plan = replace(one_gpu_plan(), nodes=2)
    recipe = RECIPES["vllm"](inputs(PdRole(kind="prefill", connector="nixl"), launcher="ray", plan=plan))
    script = container(recipe.entry)["command"][2]
    assert script.splitlines()[-1] == (
        "exec vllm serve meta-llama/Llama-3.1-8B-Instruct --served-model-name llama --port 8000"
        " --tensor-parallel-size 1 --pipeline-parallel-size 1 --max-model-len 8192"
        f" --gpu-memory-utilization 0.9 --dtype bfloat16 --kv-transfer-config '{NIXL_PRODUCER}'"
        " --distributed-executor-backend ray"
    )
    without_ray = script.splitlines()[3]  # the native launcher's line, for an image with no Ray
    assert f"--kv-transfer-config '{NIXL_PRODUCER}' --nnodes 2" in without_ray


def test_vllm_lmcache_both_sides() -> None:
    prefill = RECIPES["vllm"](inputs(PdRole(kind="prefill", connector="lmcache")))
    decode = RECIPES["vllm"](inputs(PdRole(kind="decode", connector="lmcache")))
    assert container(prefill.entry)["args"] == [
        *VLLM_BASE,
        "--kv-transfer-config",
        '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_producer","kv_connector_extra_config":'
        '{"discard_partial_chunks":false,"lmcache_rpc_port":"producer1"}}',
    ]
    assert container(decode.entry)["args"] == [
        *VLLM_BASE,
        "--kv-transfer-config",
        '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_consumer","kv_connector_extra_config":'
        '{"discard_partial_chunks":false,"lmcache_rpc_port":"consumer1"}}',
    ]
    sender, receiver = env(prefill.entry), env(decode.entry)
    # LMCache keys chunks with Python's hash: the seed must be set, and the same, on both sides
    assert sender["PYTHONHASHSEED"] == receiver["PYTHONHASHSEED"] == "0"
    assert (sender["LMCACHE_PD_ROLE"], receiver["LMCACHE_PD_ROLE"]) == ("sender", "receiver")
    assert sender["LMCACHE_ENABLE_PD"] == receiver["LMCACHE_ENABLE_PD"] == "True"
    assert sender["LMCACHE_TRANSFER_CHANNEL"] == "nixl"
    assert sender["LMCACHE_PD_SKIP_PROXY_NOTIFICATION"] == "True"
    assert receiver["LMCACHE_PD_PEER_HOST"] == POD_IP
    assert "LMCACHE_PD_PEER_HOST" not in sender
    assert ports(decode.entry) == {"http": 8000, "lmcache-init": 7300, "lmcache-alloc": 7400}
    assert ports(prefill.entry) == {"http": 8000}


def test_vllm_p2pnccl_registers_with_the_proxy() -> None:
    pd = PdRole(kind="decode", connector="p2pnccl", proxy="pd-proxy.default:30001")
    recipe = RECIPES["vllm"](inputs(pd))
    assert container(recipe.entry)["args"] == [
        *VLLM_BASE,
        "--kv-transfer-config",
        '{"kv_connector":"P2pNcclConnector","kv_role":"kv_consumer","kv_buffer_size":8000000000.0,'
        '"kv_port":21001,"kv_connector_extra_config":{"proxy_ip":"pd-proxy.default",'
        '"proxy_port":"30001","http_port":"8000","send_type":"PUT_ASYNC"}}',
    ]
    prefill = json.loads(kv_transfer_config(PdRole(kind="prefill", connector="p2pnccl", proxy="h:1")))
    assert prefill["kv_buffer_size"] == 10.0  # prefill only sends
    assert ports(recipe.entry) == {"http": 8000, "p2p-nccl": 21001}


def test_vllm_pd_env_reaches_worker_pods_of_a_multi_node_role() -> None:
    plan = planner.make_plan(
        PlanRequest(
            model=planner.get_model("llama-3.1-405b-instruct"),
            shape=planner.shape_for_instance("p5.48xlarge"),
            max_nodes=2,
            max_model_len=8192,
        )
    )
    recipe = RECIPES["vllm"](inputs(PdRole(kind="decode", connector="nixl"), plan=plan))
    assert recipe.worker_replicas == 1
    assert env(recipe.worker)["VLLM_NIXL_SIDE_CHANNEL_HOST"] == POD_IP
    assert "nixl" not in ports(recipe.worker)  # the entry pod's engine serves the side channel
    args = container(recipe.worker)["args"]
    assert args[args.index("--kv-transfer-config") + 1] == NIXL_CONSUMER


def test_user_engine_args_overriding_the_kv_transfer_config_of_a_pd_role_are_refused() -> None:
    # It would change the side or connector the role is labelled and wired for.
    pd = PdRole(kind="prefill", connector="nixl")
    recipe = RECIPES["vllm"](inputs(pd, engine_args=("--kv-transfer-config", "{}")))
    assert [(p.index, p.token) for p in recipe.refused] == [(0, "--kv-transfer-config")]
    assert not any("--kv-transfer-config" in note for note in recipe.notes)


SGLANG_BASE = [
    "--model-path",
    "meta-llama/Llama-3.1-8B-Instruct",
    "--served-model-name",
    "llama",
    "--host",
    "0.0.0.0",
    "--port",
    "8000",
    "--tp-size",
    "1",
    "--pp-size",
    "1",
    "--context-length",
    "8192",
    "--mem-fraction-static",
    "0.9",
    "--dtype",
    "bfloat16",
]


@pytest.mark.parametrize("backend", ["mooncake", "nixl"])
def test_sglang_prefill_serves_the_bootstrap_and_decode_does_not(backend: str) -> None:
    prefill = RECIPES["sglang"](inputs(PdRole(kind="prefill", connector=backend)))
    decode = RECIPES["sglang"](inputs(PdRole(kind="decode", connector=backend)))
    assert container(prefill.entry)["command"] == ["python3", "-m", "sglang.launch_server"]
    assert container(prefill.entry)["args"] == [
        *SGLANG_BASE,
        "--disaggregation-mode",
        "prefill",
        "--disaggregation-transfer-backend",
        backend,
        "--disaggregation-bootstrap-port",
        "8998",
    ]
    assert container(decode.entry)["args"] == [
        *SGLANG_BASE,
        "--disaggregation-mode",
        "decode",
        "--disaggregation-transfer-backend",
        backend,
    ]
    assert ports(prefill.entry) == {"http": 8000, "bootstrap": 8998}
    assert ports(decode.entry) == {"http": 8000}


def test_sglang_bootstrap_port_follows_the_role() -> None:
    recipe = RECIPES["sglang"](inputs(PdRole(kind="prefill", connector="mooncake", bootstrap_port=9100)))
    args = container(recipe.entry)["args"]
    assert args[args.index("--disaggregation-bootstrap-port") + 1] == "9100"
    assert ports(recipe.entry)["bootstrap"] == 9100


@pytest.mark.parametrize(("kind", "config"), [("prefill", NIXL_PRODUCER), ("decode", NIXL_CONSUMER)])
def test_sim_takes_vllms_nixl_flags(kind: str, config: str) -> None:
    recipe = RECIPES["sim"](inputs(PdRole(kind=kind, connector="nixl"), image="phalanx:0.1.0"))  # type: ignore[arg-type]
    entry = container(recipe.entry)
    assert entry["command"] == ["phalanx", "sim"]
    assert entry["args"] == [
        "--served-model-name",
        "llama",
        "--port",
        "8000",
        "--join-port",
        "8001",
        "--max-model-len",
        "8192",
        "--kv-cache-tokens",
        str(one_gpu_plan().kv_cache_tokens),
        "--tensor-parallel-size",
        "1",
        "--pipeline-parallel-size",
        "1",
        "--kv-transfer-config",
        config,
    ]
    assert env(recipe.entry)["VLLM_NIXL_SIDE_CHANNEL_HOST"] == POD_IP
    assert ports(recipe.entry) == {"http": 8000, "join": 8001, "nixl": 5600}


@pytest.mark.parametrize("engine", ["vllm", "sglang", "sim"])
def test_aggregated_roles_get_no_pd_settings(engine: str) -> None:
    recipe = RECIPES[engine](inputs(None))  # type: ignore[arg-type]
    entry = container(recipe.entry)
    text = json.dumps(entry)
    assert "kv-transfer-config" not in text
    assert "disaggregation" not in text
    assert "NIXL" not in text


def test_sim_transfers_take_the_models_kv_size() -> None:
    pd = PdRole(kind="decode", connector="nixl", kv_bytes_per_token=131072)
    args = container(RECIPES["sim"](inputs(pd)).entry)["args"]
    assert args[-4:] == ["--kv-transfer-config", NIXL_CONSUMER, "--kv-bytes-per-token", "131072"]
    vllm_args = container(RECIPES["vllm"](inputs(pd)).entry)["args"]
    assert "--kv-bytes-per-token" not in vllm_args  # a real engine knows its own
