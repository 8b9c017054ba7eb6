"""A role instance on the local runtime whose commands use LeaderWorkerSet's variables the way the
SGLang and vLLM examples do (`$(LWS_LEADER_ADDRESS):port`, `--nnodes $(LWS_GROUP_SIZE)`,
`--node-rank $(LWS_WORKER_INDEX)`, directly and through `sh -c`). The program is a stand-in
(lws_standin.py): its entry pod turns Ready only once every worker reached it at that address."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from phalanx.api.modelserving import ModelServing
from phalanx.api.names import group_key
from phalanx.controller.desired import steady_state
from phalanx.runtimes.local.backoff import BackoffPolicy
from phalanx.runtimes.local.runtime import LocalRuntime
from tests.component.runtimes.helpers import MARK, PY, condition, get_pod, until, wait_no_marked

pytestmark = pytest.mark.component

STANDIN = str(Path(__file__).resolve().parent / "lws_standin.py")
RANK_FLAGS = "--nnodes $(LWS_GROUP_SIZE) --node-rank $(LWS_WORKER_INDEX)"


def label_ref(key: str) -> dict[str, Any]:
    return {"fieldRef": {"fieldPath": f"metadata.labels['{key}']"}}


def serving(mark: str, records: Path) -> ModelServing:
    common = [{"name": MARK, "value": mark}, {"name": "RECORD_DIR", "value": str(records)}]
    entry = {
        "name": "engine",
        "image": "ignored",
        "command": [PY, STANDIN, "--dist-init-addr", "$(LWS_LEADER_ADDRESS):20000"],
        "args": ["--nnodes", "$(LWS_GROUP_SIZE)", "--node-rank", "$(LWS_WORKER_INDEX)", "--port", "8080"],
        "readinessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 0.2},
        "env": [
            *common,
            {"name": "SEEN_GROUP_KEY", "valueFrom": label_ref("leaderworkerset.sigs.k8s.io/group-key")},
            {"name": "SEEN_ROLE_ID", "valueFrom": label_ref("modelserving.volcano.sh/role-id")},
            # Another pod's own DNS name, as a program would be configured with it.
            {"name": "SEEN_WORKER_1", "value": "lws-0-engine-0-1.lws-0-engine.default.svc.cluster.local"},
        ],
    }
    join = f'exec "$PY" "$STANDIN" --dist-init-addr $(LWS_LEADER_ADDRESS):20000 {RANK_FLAGS}'
    worker = {
        "name": "engine",
        "image": "ignored",
        "command": ["sh", "-c", join],
        "env": [*common, {"name": "PY", "value": PY}, {"name": "STANDIN", "value": STANDIN}],
    }

    def template(container: dict[str, Any]) -> dict[str, Any]:
        return {"spec": {"terminationGracePeriodSeconds": 1, "containers": [container]}}

    return ModelServing.model_validate(
        {
            "apiVersion": "serving.phalanx.dev/v1alpha1",
            "kind": "ModelServing",
            "metadata": {"name": "lws"},
            "spec": {
                "replicas": 2,
                "template": {
                    "roles": [
                        {
                            "name": "engine",
                            "workerReplicas": 2,
                            "entryTemplate": template(entry),
                            "workerTemplate": template(worker),
                        }
                    ]
                },
            },
        }
    )


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[tuple[LocalRuntime, str]]:
    mark = uuid.uuid4().hex
    local = LocalRuntime(
        tmp_path / "state", gpus=0, restart_backoff=BackoffPolicy(base=0.2, cap=1.0), close_grace=2
    )
    await local.start()
    try:
        yield local, mark
    finally:
        await local.close()
        assert wait_no_marked(mark, 3.0) == [], "processes outlived the runtime"


async def _ready(local: LocalRuntime, name: str) -> bool:
    return condition(await get_pod(local, name), "Ready").get("status") == "True"


async def test_a_group_started_the_lws_way_finds_its_entry_pod(
    runtime: tuple[LocalRuntime, str], tmp_path: Path
) -> None:
    local, mark = runtime
    records = tmp_path / "records"
    records.mkdir()
    stored = await local.apply_serving(serving(mark, records))
    for obj in steady_state(stored):
        await local.create(obj)
    for group in (0, 1):
        await until(local, lambda g=group: _ready(local, f"lws-{g}-engine-0-0"), timeout=30)
    worker_1 = local.pod_address("default", "lws-0-engine-0-1")
    for group in (0, 1):
        entry = f"lws-{group}-engine-0-0"
        entry_ip = local.pod_address("default", entry)
        for index in range(3):
            seen = json.loads((records / f"lws-{group}-engine-0-{index}.json").read_text())
            env, argv = seen["env"], seen["argv"]
            assert env["LWS_LEADER_ADDRESS"] == entry_ip  # its hostname.subdomain name, resolved
            assert (env["LWS_GROUP_SIZE"], env["LWS_WORKER_INDEX"]) == ("3", str(index))
            assert argv[:6] == [
                "--dist-init-addr",
                f"{entry_ip}:20000",
                "--nnodes",
                "3",
                "--node-rank",
                str(index),
            ]
        seen = json.loads((records / f"{entry}.json").read_text())["env"]
        assert seen["SEEN_GROUP_KEY"] == group_key("default", entry)
        assert seen["SEEN_ROLE_ID"] == "engine-0"
        assert seen["SEEN_WORKER_1"] == worker_1
