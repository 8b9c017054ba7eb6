"""The informer's store: reads by namespace and labels, the label index, what a relist changed."""

from __future__ import annotations

from typing import Any

import pytest

from phalanx.kube.informer import Store, changed_by_list, key_of, matches, trimmed

NAME = "serving.phalanx.dev/name"


def obj(
    name: str, namespace: str = "ns", version: str = "1", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    metadata = {"name": name, "namespace": namespace, "resourceVersion": version, "labels": labels or {}}
    return {"metadata": metadata}


def named(objects: list[dict[str, Any]]) -> list[str]:
    return [f"{key_of(o)[0]}/{key_of(o)[1]}" for o in objects]


@pytest.fixture
def store() -> Store:
    s = Store(index_label=NAME)
    s.replace(
        [
            obj("a-0", labels={NAME: "a", "role": "leader"}),
            obj("a-1", labels={NAME: "a", "role": "worker"}),
            obj("b-0", labels={NAME: "b"}),
            obj("a-0", "other", labels={NAME: "a"}),
            obj("loose"),
        ]
    )
    return s


def test_select_by_the_indexed_label_stays_in_its_namespace(store: Store) -> None:
    assert named(store.select("ns", {NAME: "a"})) == ["ns/a-0", "ns/a-1"]
    assert named(store.select("other", {NAME: "a"})) == ["other/a-0"]
    assert store.select("ns", {NAME: "c"}) == []


def test_select_with_more_terms_than_the_index(store: Store) -> None:
    assert named(store.select("ns", {NAME: "a", "role": "worker"})) == ["ns/a-1"]
    assert named(store.select("ns", {"role": "leader"})) == ["ns/a-0"]  # no index: a scan


def test_select_everywhere_and_everything(store: Store) -> None:
    assert named(store.select(None, {NAME: "a"})) == ["ns/a-0", "ns/a-1", "other/a-0"]
    assert named(store.select("ns", {})) == ["ns/a-0", "ns/a-1", "ns/b-0", "ns/loose"]


def test_what_a_reader_holds_stays_as_it_was_read(store: Store) -> None:
    (held,) = store.select("ns", {NAME: "b"})
    store.put(obj("b-0", version="7", labels={NAME: "c"}))  # a newer version replaces, never edits
    assert held["metadata"]["labels"] == {NAME: "b"} and held["metadata"]["resourceVersion"] == "1"
    assert named(store.select("ns", {NAME: "b"})) == [] and named(store.select("ns", {NAME: "c"})) == [
        "ns/b-0"
    ]


def test_managed_fields_are_not_kept() -> None:
    written = obj("p", labels={NAME: "a"})
    written["metadata"]["managedFields"] = [{"manager": "phalanx", "fieldsV1": {"f:spec": {}}}]
    s = Store(index_label=NAME)
    s.put(written)
    (stored,) = s.select("ns", {NAME: "a"})
    assert "managedFields" not in stored["metadata"] and stored["metadata"]["labels"] == {NAME: "a"}
    assert "managedFields" in written["metadata"]  # the caller's object is left alone
    assert trimmed(stored) is stored  # nothing to drop: no copy


def test_only_the_owners_of_spec_replicas_are_kept_of_managed_fields() -> None:
    written = obj("s")
    written["metadata"]["managedFields"] = [
        {"manager": "phalanx", "operation": "Apply",
         "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}}},
        {"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale",
         "time": "2026-12-07T00:00:00Z", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        {"manager": "phalanx", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {}}},
    ]  # fmt: skip
    assert trimmed(written)["metadata"]["managedFields"] == [
        {"manager": "phalanx", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        {"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale",
         "fieldsV1": {"f:spec": {"f:replicas": {}}}},
    ]  # fmt: skip


def test_a_relabelled_object_moves_in_the_index_and_a_removed_one_leaves_it(store: Store) -> None:
    store.put(obj("a-1", version="2", labels={NAME: "b"}))
    assert named(store.select("ns", {NAME: "a"})) == ["ns/a-0"]
    assert named(store.select("ns", {NAME: "b"})) == ["ns/a-1", "ns/b-0"]
    store.remove(("ns", "a-0"))
    store.remove(("ns", "never-there"))
    assert store.select("ns", {NAME: "a"}) == []
    assert named(store.select("other", {NAME: "a"})) == ["other/a-0"]


def test_a_store_without_an_index_scans() -> None:
    s = Store()
    s.replace([obj("x", labels={"role": "leader"}), obj("y")])
    assert named(s.select("ns", {"role": "leader"})) == ["ns/x"]


def test_matches_needs_every_term() -> None:
    o = obj("x", labels={"a": "1", "b": "2"})
    assert matches(o, {}) and matches(o, {"a": "1"}) and matches(o, {"a": "1", "b": "2"})
    assert not matches(o, {"a": "2"}) and not matches(o, {"c": "1"})
    assert not matches({"metadata": {}}, {"a": "1"})


def test_a_relist_tells_what_is_new_changed_and_gone() -> None:
    before = {key_of(o): o for o in (obj("same"), obj("edited"), obj("gone"))}
    after = {key_of(o): o for o in (obj("same"), obj("edited", version="2"), obj("new"))}
    assert named(changed_by_list(before, after)) == ["ns/edited", "ns/new", "ns/gone"]
    assert changed_by_list(after, after) == []
    assert named(changed_by_list({}, after)) == ["ns/same", "ns/edited", "ns/new"]


def test_a_write_remembered_before_its_watch_event_is_not_overwritten_by_an_older_one() -> None:
    s = Store(index_label=NAME)
    s.put(obj("p", version="12", labels={NAME: "a", "step": "patched"}))
    s.put(obj("p", version="11", labels={NAME: "a", "step": "created"}))  # the create's event, late
    assert s.select("ns", {NAME: "a"})[0]["metadata"]["labels"]["step"] == "patched"
    s.put(obj("p", version="13", labels={NAME: "a", "step": "later"}))
    assert s.select("ns", {NAME: "a"})[0]["metadata"]["labels"]["step"] == "later"
    s.put(obj("p", version="not-a-number", labels={NAME: "a", "step": "opaque"}))  # cannot compare: take it
    assert s.select("ns", {NAME: "a"})[0]["metadata"]["labels"]["step"] == "opaque"
