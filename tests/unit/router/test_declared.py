"""The models ModelServings declare, read from their entry templates before any pod runs."""

from __future__ import annotations

from typing import Any

from phalanx.router.declared import Declared, declared_by_servings, serving_models

Object = dict[str, Any]


def container(*args: str, command: list[str] | None = None) -> Object:
    return {"name": "engine", "image": "vllm", "command": command or ["vllm", "serve"], "args": list(args)}


def role(name: str, *containers: Object) -> Object:
    return {"name": name, "replicas": 1, "entryTemplate": {"spec": {"containers": list(containers)}}}


def serving(*roles: Object, replicas: int = 1, deleting: bool = False, name: str = "demo") -> Object:
    metadata: Object = {"name": name, "namespace": "team-a"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-07T00:00:00Z"
    return {"metadata": metadata, "spec": {"replicas": replicas, "template": {"roles": list(roles)}}}


def test_the_served_model_names_of_every_role_count_even_at_zero_replicas() -> None:
    pd = serving(
        role("prefill", container("org/llama", "--served-model-name", "llama", "small")),
        role("decode", container("org/llama", "--served-model-name", "llama")),
        replicas=0,
    )
    assert serving_models(pd) == ("llama", "small")
    assert declared_by_servings([pd]) == Declared(frozenset({"llama", "small"}), complete=True)


def test_names_in_a_shell_script_count_and_the_last_flag_wins_as_argparse_reads_it() -> None:
    script = container(
        "cd /models && exec vllm serve org/m --served-model-name first second",
        command=["sh", "-c"],
    )
    assert serving_models(serving(role("r", script))) == ("first", "second")
    twice = container("--served-model-name", "a", "--served-model-name", "b")
    assert serving_models(serving(role("r", twice))) == ("b",)


def test_the_serving_container_is_the_one_with_the_http_port() -> None:
    sidecar = container("--served-model-name", "wrong")
    engine = {**container("--served-model-name", "right"), "ports": [{"name": "http", "containerPort": 8000}]}
    assert serving_models(serving(role("r", sidecar, engine))) == ("right",)


def test_names_unknown_before_the_pod_runs_make_the_declarations_incomplete() -> None:
    expanded = serving(role("r", container("--served-model-name", "$(MODEL)")), name="a")
    no_flag = serving(role("r", container("org/m")), name="b")
    plain = serving(role("r", container("--served-model-name", "m")), name="c")
    assert serving_models(expanded) is None
    assert serving_models(no_flag) is None
    # One role unreadable spoils its ModelServing, not the others'.
    mixed = serving(role("a", container("--served-model-name", "x")), role("b", container()))
    assert serving_models(mixed) is None
    assert declared_by_servings([expanded, no_flag, plain]) == Declared(frozenset({"m"}), complete=False)


def test_a_serving_being_deleted_declares_nothing_and_none_is_complete() -> None:
    gone = serving(role("r", container("--served-model-name", "m")), deleting=True)
    assert declared_by_servings([gone]) == Declared(frozenset(), complete=True)
    assert declared_by_servings([]) == Declared(frozenset(), complete=True)


def test_malformed_specs_declare_nothing_rather_than_fail() -> None:
    odd: list[Object] = [
        {},
        {"spec": None},
        {"spec": {"template": {"roles": "x"}}},
        {"spec": {"template": {"roles": [None, {"entryTemplate": 3}]}}},
    ]
    assert [serving_models(s) for s in odd] == [None, None, None, None]


def test_hold_models_add_to_what_servings_declare() -> None:
    assert Declared(frozenset({"a"}), True).with_models(["b"]) == Declared(frozenset({"a", "b"}), True)
