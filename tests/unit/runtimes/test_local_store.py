from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from phalanx.api.modelserving import ModelServing, ModelServingStatus
from phalanx.runtimes.base import NotFoundError
from phalanx.runtimes.local.store import Store
from tests.conftest import minimal_serving


def serving(**spec: Any) -> ModelServing:
    data = minimal_serving()
    data["spec"].update(spec)
    return ModelServing.model_validate(data)


def pod(name: str, **labels: str) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": {"containers": []}}


def test_create_sets_server_fields_and_copies() -> None:
    store = Store()
    original = pod("a", app="x")
    created = store.create(original)
    assert created is not None
    metadata = created["metadata"]
    assert metadata["namespace"] == "default"
    assert metadata["uid"] and metadata["creationTimestamp"].endswith("Z") and metadata["resourceVersion"]
    original["metadata"]["labels"]["app"] = "changed"
    listed = store.list_objects("Pod", "default", {})
    listed[0]["metadata"]["labels"]["app"] = "changed too"
    assert store.list_objects("Pod", "default", {"app": "x"})[0]["metadata"]["name"] == "a"
    assert store.create(pod("a")) is None  # an existing name is left as it is


def test_selector_and_namespace() -> None:
    store = Store()
    store.create(pod("a", app="x", tier="1"))
    store.create(pod("b", app="x"))
    other = pod("c", app="x")
    other["metadata"]["namespace"] = "other"
    store.create(other)
    assert [o["metadata"]["name"] for o in store.list_objects("Pod", "default", {"app": "x"})] == ["a", "b"]
    assert [o["metadata"]["name"] for o in store.list_objects("Pod", "default", {"tier": "1"})] == ["a"]
    assert [o["metadata"]["name"] for o in store.list_objects("Pod", "other", {})] == ["c"]


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="not Deployment"):
        Store().create({"kind": "Deployment", "metadata": {"name": "x"}})


def test_generation_counts_spec_changes_only_and_status_is_kept() -> None:
    store = Store()
    first = store.apply_serving(serving())
    assert first.metadata.generation == 1 and first.metadata.uid
    store.write_status("default", "demo", ModelServingStatus(replicas=2))
    same = store.apply_serving(serving())
    assert same.metadata.generation == 1
    assert same.metadata.uid == first.metadata.uid
    scaled = store.apply_serving(serving(replicas=3))
    assert scaled.metadata.generation == 2
    assert scaled.status is not None and scaled.status.replicas == 2
    with pytest.raises(NotFoundError):
        store.write_status("default", "missing", ModelServingStatus())


async def test_wait_for_change_wakes_on_any_change_and_times_out_otherwise() -> None:
    store = Store()
    loop = asyncio.get_running_loop()
    began = loop.time()
    await store.wait_for_change(0.05)
    assert loop.time() - began >= 0.04
    waiter = asyncio.create_task(store.wait_for_change(5.0))
    await asyncio.sleep(0.01)
    store.create(pod("a"))
    await asyncio.wait_for(waiter, 1.0)
    before = store.changes
    store.update("Pod", "default", "a", lambda o: None)  # no real change: no wake-up
    assert store.changes == before
    store.update("Pod", "default", "a", lambda o: o.setdefault("status", {}).update(phase="Running"))
    assert store.changes == before + 1


def test_events_are_a_bounded_ring_filtered_by_serving() -> None:
    store = Store(max_events=3)
    for i in range(5):
        store.record("Normal", "R", f"m{i}", "default", "Pod", "p", "a" if i % 2 else "b")
    assert [e.message for e in store.events()] == ["m2", "m3", "m4"]
    assert [e.message for e in store.events("a")] == ["m3"]
    assert store.events()[0].to_dict()["involvedObject"] == {"kind": "Pod", "name": "p"}


def test_update_does_not_leak_references() -> None:
    store = Store()
    store.create(pod("a"))
    status = {"phase": "Running"}
    store.update("Pod", "default", "a", lambda o: o.update(status=copy.deepcopy(status)))
    status["phase"] = "Failed"
    got = store.get("Pod", "default", "a")
    assert got is not None and got["status"]["phase"] == "Running"
