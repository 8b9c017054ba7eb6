"""GPUs as an inventory in `phalanx up`: gangs start whole or wait whole; deployments are planned onto it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.component.embedded.harness import ROOT, running_up
from tests.component.embedded.test_up import fast

pytestmark = pytest.mark.component


def with_gpus(data: dict[str, Any], per_pod: int) -> dict[str, Any]:
    role = data["spec"]["template"]["roles"][0]
    for template in ("entryTemplate", "workerTemplate"):
        container = role[template]["spec"]["containers"][0]
        container["resources"] = {"limits": {"nvidia.com/gpu": str(per_pod)}}
    return data


def test_a_group_that_does_not_fit_waits_whole(tmp_path: Path) -> None:
    # Two groups of two 1-GPU pods on 3 GPUs: one group runs, the other may not start half.
    with running_up(tmp_path, with_gpus(fast(), 1), gpus=3) as up:

        def one_ready_one_pending(payload: dict[str, Any]) -> bool:
            groups = (payload["servings"][0].get("status") or {}).get("groups") or []
            return sorted(g["phase"] for g in groups) == ["Pending", "Ready"]

        payload = up.wait_for(one_ready_one_pending, "one group ready, one pending", timeout=60)
        groups = {g["phase"]: g for g in payload["servings"][0]["status"]["groups"]}
        waiting = groups["Pending"]
        assert "needs 2 GPUs, 1 of 3 free" in waiting["message"]
        pods = [p for p in payload["pods"] if p["group"] == waiting["index"]]
        assert len(pods) == 2
        assert all(p["phase"] == "Pending" and not p["pids"] for p in pods)
        running = [p for p in payload["pods"] if p["group"] != waiting["index"]]
        assert sorted(p["gpus"] for p in running) in (["0", "1"], ["0", "2"], ["1", "2"])
        assert payload["gpus"] == {"total": 3, "free": 1}

        # Scale-down removes the group that is not ready, and keeps the one serving.
        assert up.phalanx("scale", "quickstart", "--replicas", "1").returncode == 0
        payload = up.wait_available(groups=1, timeout=60)
        assert [g["index"] for g in payload["servings"][0]["status"]["groups"]] == [groups["Ready"]["index"]]
        assert payload["gpus"]["free"] == 1


def test_a_model_deployment_is_planned_and_served(tmp_path: Path) -> None:
    with running_up(tmp_path, ROOT / "examples" / "quickstart-deployment.yaml", gpus=2) as up:
        up.wait_available(name="tiny", timeout=90)
        payload = up.status()
        assert sorted(p["gpus"] for p in payload["pods"]) == ["0", "1"]
        api = openai.OpenAI(base_url=up.base_url, api_key="unused", max_retries=0)
        models = [m.id for m in api.models.list()]
        assert models
        reply = api.completions.create(model=models[0], prompt="The capital of", max_tokens=4)
        assert reply.choices[0].text
