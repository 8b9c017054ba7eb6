"""The PD quickstart's compiled prefill and decode pods, run as real `phalanx sim` processes on loopback with
the recipe's own flags and env: vLLM's prefill/decode flow goes through, the KV crossing the side channel
the env names, and no block leaks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from phalanx.api import ModelDeployment, load_text
from phalanx.compiler import compile_deployment
from tests.component.sim.conftest import FAST, HOST, SimProcess, free_port, metric, start_sim, wait_health
from tests.component.sim.test_pd_vllm import PROMPT, post, prefill_step

__all__ = ["start_sim"]  # the fixture, imported so this module can use it

EXAMPLE = Path(__file__).parents[3] / "examples" / "quickstart-pd-deployment.yaml"
# Flags the test replaces: each process needs its own ports, and the prompt must fit the test's context.
REPLACED = {"--served-model-name", "--port", "--join-port", "--max-model-len"}


def compiled_containers() -> dict[str, dict[str, Any]]:
    (md,) = load_text(EXAMPLE.read_text(), str(EXAMPLE)).resources
    assert isinstance(md, ModelDeployment)
    roles = compile_deployment(md).model_serving.spec.template.roles
    return {role.name: role.entry_template.spec["containers"][0] for role in roles}


def flags(container: dict[str, Any]) -> list[str]:
    """The recipe's args without the ones `start_sim` sets itself."""
    args: list[str] = container["args"]
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in REPLACED:
            skip = True
        else:
            kept.append(arg)
    return kept


def env(container: dict[str, Any]) -> dict[str, str]:
    """The connector env as the kubelet would give it: the pod IP is loopback, the port one that is free."""
    names = {item["name"] for item in container["env"]} - {"POD_IP"}
    assert names == {"VLLM_NIXL_SIDE_CHANNEL_HOST", "VLLM_NIXL_SIDE_CHANNEL_PORT"}
    return {"VLLM_NIXL_SIDE_CHANNEL_HOST": HOST, "VLLM_NIXL_SIDE_CHANNEL_PORT": str(free_port())}


async def test_the_compiled_roles_run_vllms_pd_flow(start_sim: Callable[..., SimProcess]) -> None:
    containers = compiled_containers()
    assert containers["prefill"]["command"] == containers["decode"]["command"] == ["phalanx", "sim"]
    prefill = start_sim(*FAST, *flags(containers["prefill"]), env=env(containers["prefill"]))
    decode = start_sim(*FAST, *flags(containers["decode"]), env=env(containers["decode"]))
    wait_health(prefill.port, 200)
    wait_health(decode.port, 200)
    async with aiohttp.ClientSession() as session:
        params = (await prefill_step(session, prefill))["kv_transfer_params"]
        assert params["do_remote_prefill"] is True and params["remote_host"] == HOST
        status, out = await post(
            session, decode, {"prompt": PROMPT, "max_tokens": 4, "kv_transfer_params": params}
        )
        assert status == 200, out
        assert out["usage"]["completion_tokens"] == 4
        assert await metric(session, decode, "vllm:nixl_xfer_time_seconds_count") == 1
        assert await metric(session, prefill, "phalanx_sim_kv_leased_blocks") == 0
        assert await metric(session, prefill, "phalanx_sim_kv_leaked_blocks") == 0
