"""Entry pods to router endpoints: the rules shared by `phalanx up` and Kubernetes discovery."""

from __future__ import annotations

from typing import Any

import pytest

from phalanx.api import labels as L
from phalanx.api.load import load_text
from phalanx.api.modeldeployment import ModelDeployment
from phalanx.compiler import compile_deployment
from phalanx.controller.observed import DRAINING_ANNOTATION
from phalanx.router.pods import (
    endpoint_from_pod,
    endpoints_from_pods,
    http_port,
    pod_ready,
    served_model_names,
    serving_endpoints,
)
from tests.conftest import EXAMPLES

UID = "uid-demo"


def entry_pod(
    name: str = "demo-0-sim-0-0",
    *,
    namespace: str | None = "team-a",
    serving: str = "demo",
    ready: bool = True,
    phase: str = "Running",
    ip: str | None = "127.20.0.7",
    ports: list[dict[str, Any]] | None = None,
    args: list[str] | None = None,
    annotations: dict[str, str] | None = None,
    deleting: bool = False,
    entry: bool = True,
    group: str = "0",
    owner_uid: str | None = UID,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {L.NAME: serving, L.GROUP_INDEX: group, L.ENTRY: "true" if entry else "false"},
        "annotations": annotations or {},
    }
    if namespace is not None:
        metadata["namespace"] = namespace
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-23T00:00:00Z"
    if owner_uid is not None:
        metadata["ownerReferences"] = [
            {"apiVersion": L.GROUP_VERSION, "kind": "ModelServing", "name": serving, "uid": owner_uid,
             "controller": True},
        ]  # fmt: skip
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if ip is not None:
        status["podIP"] = ip
    container: dict[str, Any] = {"name": "engine", "ports": ports or [], "command": ["phalanx", "sim"]}
    if args is not None:
        container["args"] = args
    return {"metadata": metadata, "spec": {"containers": [container]}, "status": status}


def serving(
    name: str = "demo", namespace: str = "team-a", uid: str = UID, deleting: bool = False
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid}
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-23T00:00:00Z"
    return {"apiVersion": L.GROUP_VERSION, "kind": "ModelServing", "metadata": metadata, "spec": {}}


# -- one pod -----------------------------------------------------------------------------------


def test_an_entry_pod_becomes_a_namespaced_endpoint_on_its_http_port() -> None:
    ports = [{"name": "join", "containerPort": 8001}, {"name": "http", "containerPort": 8000}]
    pod = entry_pod(ports=ports, args=["--served-model-name", "tiny", "--port", "8000"], group="3")
    (endpoint,) = endpoints_from_pods([pod, entry_pod("demo-0-sim-0-1", entry=False)])
    assert endpoint.name == "team-a/demo-0-sim-0-0"
    assert endpoint.url == "http://127.20.0.7:8000"
    assert (endpoint.serving, endpoint.group_index, endpoint.models) == ("demo", 3, ("tiny",))
    assert endpoint.routable


def test_http_port_is_the_port_named_http_else_the_first_declared_else_8000() -> None:
    named = [{"name": "join", "containerPort": 9001}, {"name": "http", "containerPort": 9000}]
    assert http_port(entry_pod(ports=named)) == 9000
    assert http_port(entry_pod(ports=[{"containerPort": 9000}, {"containerPort": 9100}])) == 9000
    assert http_port(entry_pod(ports=[{"name": "http", "containerPort": "8000"}])) == 8000  # not a number
    assert http_port(entry_pod()) == 8000
    assert http_port({"spec": {}}) == 8000


def test_the_models_come_from_the_container_that_serves_http() -> None:
    pod = entry_pod(args=["--served-model-name", "sidecar"])
    pod["spec"]["containers"].append(
        {
            "args": ["--served-model-name", "real"],
            "ports": [{"name": "http", "containerPort": 80}],
        }
    )
    ep = endpoint_from_pod(pod)
    assert ep is not None
    assert (ep.url, ep.models) == ("http://127.20.0.7:80", ("real",))


def test_a_pod_without_the_flag_leaves_its_models_to_be_asked() -> None:
    ep = endpoint_from_pod(entry_pod(args=["--port", "8000"]))
    assert ep is not None and ep.models == ()


@pytest.mark.parametrize(
    ("pod", "why"),
    [
        (entry_pod(entry=False), "a worker pod"),
        (entry_pod(ip=None), "no address yet"),
        (entry_pod(ip=""), "an empty address"),
        ({"metadata": {"labels": {L.ENTRY: "true"}}, "status": {"podIP": "10.0.0.1"}}, "no name"),
        ({}, "nothing at all"),
    ],
)
def test_pods_that_are_no_endpoint(pod: dict[str, Any], why: str) -> None:
    assert endpoint_from_pod(pod) is None, why


@pytest.mark.parametrize(
    ("pod", "ready", "draining"),
    [
        (entry_pod(), True, False),
        (entry_pod(ready=False), False, False),
        (entry_pod(phase="Pending", ready=False), False, False),
        (entry_pod(phase="Failed"), False, False),  # a stale Ready condition on a failed pod
        (entry_pod(phase="Succeeded"), False, False),
        (entry_pod(annotations={DRAINING_ANNOTATION: "2026-11-23T00:00:00Z"}), True, True),
        (entry_pod(deleting=True), False, True),
    ],
)
def test_only_running_ready_unmarked_live_pods_are_routable(
    pod: dict[str, Any], ready: bool, draining: bool
) -> None:
    ep = endpoint_from_pod(pod)
    assert ep is not None
    assert (ep.ready, ep.draining, ep.routable) == (ready, draining, ready and not draining)


def test_pod_ready_needs_the_condition_and_the_phase() -> None:
    assert pod_ready(entry_pod())
    assert not pod_ready({"status": {"phase": "Running"}})
    only_containers = [{"type": "ContainersReady", "status": "True"}]
    assert not pod_ready({"status": {"phase": "Running", "conditions": only_containers}})
    assert not pod_ready({})


def test_odd_labels_and_addresses_do_not_break_the_mapping() -> None:
    ep = endpoint_from_pod(entry_pod(namespace=None, group="x", ip="fd00::7"))
    assert ep is not None
    assert (ep.name, ep.url, ep.group_index) == ("default/demo-0-sim-0-0", "http://[fd00::7]:8000", 0)


# -- model names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "args", "names"),
    [
        (["phalanx", "sim"], ["--served-model-name", "tiny", "--port", "8000"], ("tiny",)),
        (["vllm", "serve"], ["m/x", "--served-model-name", "a", "b", "--port", "8000"], ("a", "b")),
        (["vllm", "serve"], ["m/x", "--served-model-name", "a", "a"], ("a",)),
        (["vllm", "serve"], ["--served-model-name=a", "b"], ("a",)),  # `=` takes exactly one
        (["vllm", "serve"], ["--served_model_name", "a"], ("a",)),  # vLLM accepts underscores
        (["vllm", "serve"], ["--served-model-name", "a", "--served-model-name", "b"], ("b",)),
        (["vllm", "serve", "--served-model-name", "in-command"], [], ("in-command",)),
        (["vllm", "serve"], ["--served-model-name"], ()),
        (["vllm", "serve"], ["--served-model-name", "--port", "8000"], ()),
        (["vllm", "serve"], ["--served-model-name="], ()),
        (["vllm", "serve"], ["m/x", "--port", "8000"], ()),  # served under the model path: ask
        (["vllm", "serve"], ["--served-model-name", "$(MODEL_NAME)"], ()),  # expanded by the kubelet
        (["vllm", "serve"], ["--served-model-names", "a"], ()),
        (["vllm", "serve"], ["-served-model-name", "a"], ()),
        (None, None, ()),
        (["sh", "-c", "exec vllm serve m --served-model-name a b --port 8000"], None, ("a", "b")),
        (["/bin/bash", "-lc", "exec vllm serve m --served-model-name 'a b'"], None, ("a b",)),
        (["sh", "-e", "-c", "vllm serve m --served-model-name a; echo done"], None, ("a",)),
        (["sh"], ["-c", "vllm serve m --served-model-name a&&sleep 1"], ("a",)),
        (["sh", "-c", "vllm serve m --served-model-name a\nsleep 1"], None, ("a",)),
        (["sh", "-c", "vllm serve m \\\n  --served-model-name a \\\n  --port 8000"], None, ("a",)),
        (["sh", "-c", "# --served-model-name old\nvllm serve m"], None, ()),
        (["sh", "-c", 'vllm serve m --served-model-name "$NAME"'], None, ()),  # shell expansion
        (["sh", "-c", "vllm serve m --served-model-name 'unbalanced"], None, ()),
        (["sh", "-c"], None, ()),
        (["bash", "--login", "-o", "pipefail", "+x", "-c", "x --served-model-name a"], None, ("a",)),
        (["sh", "/start.sh", "--served-model-name", "a"], None, ("a",)),  # passed on to the engine
        (["sh", "/start.sh", "-c", "x --served-model-name a"], None, ()),
        (["python3", "-c", "--served-model-name a"], None, ()),  # not a shell: one argument
    ],
)
def test_served_model_names_as_argparse_and_the_shell_read_them(
    command: list[str] | None, args: list[str] | None, names: tuple[str, ...]
) -> None:
    container: dict[str, Any] = {"name": "engine"}
    if command is not None:
        container["command"] = command
    if args is not None:
        container["args"] = args
    assert served_model_names(container) == names


def test_non_string_arguments_are_ignored() -> None:
    assert served_model_names({"args": ["--served-model-name", 7, "a"]}) == ("a",)
    assert served_model_names({"args": "--served-model-name a"}) == ()


def test_every_example_and_generated_recipe_names_its_model() -> None:
    """vLLM (Ray and native launchers), SGLang and the simulator, as the compiler writes them."""
    found = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for resource in load_text(path.read_text(), str(path)).resources:
            ms = resource
            if isinstance(resource, ModelDeployment):
                ms = compile_deployment(resource).model_serving
            for role in ms.spec.template.roles:
                (container, *_) = role.entry_template.spec["containers"]
                found[(path.name, role.name)] = served_model_names(container)
    assert found == {
        ("autoscale-live.yaml", "sim"): ("live-model",),
        ("llama-3.1-405b-2x8-h100.yaml", "engine"): ("llama-3.1-405b-instruct",),  # sh -c, multi-line
        ("llama-3.3-70b-nc80adis.yaml", "engine"): ("llama-3.3-70b-instruct",),
        ("llama-multinode.yaml", "405b"): (),  # Kthena's example: no flag, served under the model path
        ("llama-multinode-vllm-0.33.yaml", "405b"): (),  # its corrected form, likewise
        ("quickstart-deployment.yaml", "engine"): ("tiny-test",),
        ("quickstart-pd-deployment.yaml", "prefill"): ("tiny-test",),
        ("quickstart-pd-deployment.yaml", "decode"): ("tiny-test",),
        ("quickstart-pd.yaml", "prefill"): ("tiny-test",),
        ("quickstart-pd.yaml", "decode"): ("tiny-test",),
        ("quickstart.yaml", "sim"): ("tiny-test",),
    }


@pytest.mark.parametrize("engine", ["sglang", "vllm-native"])
def test_other_engines_name_their_model(engine: str) -> None:
    text = (EXAMPLES / "llama-3.3-70b-nc80adis.yaml").read_text()
    if engine == "sglang":
        text = text.replace("engine: vllm", "engine: sglang")
    else:
        text = text.replace("engine: vllm", "engine: vllm\n  launcher: native")
    (md,) = load_text(text, "x.yaml").resources
    assert isinstance(md, ModelDeployment)
    (role,) = compile_deployment(md).model_serving.spec.template.roles
    (container,) = role.entry_template.spec["containers"]
    assert served_model_names(container) == ("llama-3.3-70b-instruct",)


@pytest.mark.parametrize(("engine", "path"), [("sglang", "/ready"), ("vllm", "/health")])
def test_the_health_check_asks_what_the_recipes_readiness_probe_asks(engine: str, path: str) -> None:
    text = (EXAMPLES / "llama-3.3-70b-nc80adis.yaml").read_text().replace("engine: vllm", f"engine: {engine}")
    (md,) = load_text(text, "x.yaml").resources
    assert isinstance(md, ModelDeployment)
    (role,) = compile_deployment(md).model_serving.spec.template.roles
    pod = entry_pod()
    pod["spec"] = role.entry_template.spec
    ep = endpoint_from_pod(pod)
    assert ep is not None and ep.health_path == path


@pytest.mark.parametrize(
    "probe",
    [None, {}, {"exec": {"command": ["true"]}}, {"httpGet": {"path": 7}}, {"httpGet": {"path": "ready"}}],
)
def test_without_a_usable_http_readiness_probe_the_health_check_asks_health(probe: Any) -> None:
    pod = entry_pod()
    if probe is not None:
        pod["spec"]["containers"][0]["readinessProbe"] = probe
    ep = endpoint_from_pod(pod)
    assert ep is not None and ep.health_path == "/health"


# -- Kubernetes: pods of the ModelServings that exist --------------------------------------------


def test_entry_pods_of_existing_model_servings_are_endpoints_sorted_by_name() -> None:
    pods = [
        entry_pod("demo-1-sim-0-0", group="1"),
        entry_pod("demo-0-sim-0-0"),
        entry_pod("demo-0-sim-0-1", entry=False),
        entry_pod("other-0-sim-0-0", serving="other", owner_uid="uid-other"),
    ]
    eps = serving_endpoints(pods, [serving(), serving("other", uid="uid-other")])
    names = ["team-a/demo-0-sim-0-0", "team-a/demo-1-sim-0-0", "team-a/other-0-sim-0-0"]
    assert [ep.name for ep in eps] == names


def test_pods_without_their_model_serving_are_not_endpoints() -> None:
    pods = [
        entry_pod("a", serving="gone"),
        entry_pod("b", namespace="team-b"),  # same name, other namespace
        entry_pod("c", serving=""),
    ]
    assert serving_endpoints(pods, [serving()]) == []
    assert serving_endpoints(pods, []) == []


def test_a_pod_of_an_earlier_model_serving_with_the_same_name_is_not_an_endpoint() -> None:
    pods = [entry_pod("old", owner_uid="uid-before"), entry_pod("new"), entry_pod("adopted", owner_uid=None)]
    assert [ep.name for ep in serving_endpoints(pods, [serving()])] == ["team-a/adopted", "team-a/new"]
    # A ModelServing without a uid cannot be matched against a controller reference.
    assert [ep.name for ep in serving_endpoints(pods, [serving(uid="")])] == ["team-a/adopted"]


def test_owner_references_of_other_kinds_do_not_count() -> None:
    pod = entry_pod(owner_uid=None)
    pod["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "ModelServing", "uid": "x", "controller": True},
        {"apiVersion": L.GROUP_VERSION, "kind": "ModelServing", "uid": "y", "controller": False},
        {"apiVersion": L.GROUP_VERSION, "kind": "ModelDeployment", "uid": "z", "controller": True},
    ]
    assert len(serving_endpoints([pod], [serving()])) == 1


def test_a_model_serving_being_deleted_takes_no_new_requests() -> None:
    (ep,) = serving_endpoints([entry_pod()], [serving(deleting=True)])
    assert (ep.ready, ep.draining, ep.routable) == (True, True, False)


def test_the_rules_of_one_pod_hold_for_the_pods_of_a_model_serving() -> None:
    pods = [
        entry_pod("ready"),
        entry_pod("not-ready", ready=False),
        entry_pod("failed", phase="Failed", ready=False),
        entry_pod("draining", annotations={DRAINING_ANNOTATION: "2026-11-23T00:00:00Z"}),
        entry_pod("terminating", deleting=True),
        entry_pod("unscheduled", ip=None, phase="Pending", ready=False),
    ]
    eps = serving_endpoints(pods, [serving()])
    assert {ep.name.removeprefix("team-a/"): ep.routable for ep in eps} == {
        "ready": True,
        "not-ready": False,
        "failed": False,
        "draining": False,
        "terminating": False,
    }


# -- prefill/decode --------------------------------------------------------------------------


def pd_pod(role: str | None, *, key: str | None = "demo", **notes: str) -> dict[str, Any]:
    pod = entry_pod(annotations=dict(notes))
    if role is not None:
        pod["metadata"]["labels"][L.PD_ROLE] = role
    if key is not None:
        pod["metadata"]["labels"][L.PD_PAIR_KEY] = key
    return pod


def test_pd_labels_and_annotations_become_the_endpoints_pd_fields() -> None:
    ep = endpoint_from_pod(pd_pod("decode", key="demo-3"))
    assert ep is not None
    assert (ep.pd_role, ep.pd_protocol, ep.pd_pair_key, ep.bootstrap_port) == (
        "decode",
        "vllm",
        "demo-3",
        None,
    )
    ep = endpoint_from_pod(
        pd_pod("prefill", **{L.PD_PROTOCOL_ANNOTATION: "sglang", L.PD_BOOTSTRAP_PORT_ANNOTATION: "9100"})
    )
    assert ep is not None
    assert (ep.pd_role, ep.pd_protocol, ep.bootstrap_port) == ("prefill", "sglang", 9100)


@pytest.mark.parametrize("port", [None, "", "x", "0", "70000"])
def test_an_sglang_prefill_pod_without_a_usable_port_gets_sglangs_default(port: str | None) -> None:
    notes = {L.PD_PROTOCOL_ANNOTATION: "sglang"}
    if port is not None:
        notes[L.PD_BOOTSTRAP_PORT_ANNOTATION] = port
    ep = endpoint_from_pod(pd_pod("prefill", **notes))
    assert ep is not None and ep.bootstrap_port == 8998


def test_sglang_decode_pods_have_no_bootstrap_port_and_unknown_protocols_read_as_vllm() -> None:
    ep = endpoint_from_pod(pd_pod("decode", **{L.PD_PROTOCOL_ANNOTATION: "sglang"}))
    assert ep is not None and (ep.pd_protocol, ep.bootstrap_port) == ("sglang", None)
    ep = endpoint_from_pod(pd_pod("decode", **{L.PD_PROTOCOL_ANNOTATION: "trt"}))
    assert ep is not None and ep.pd_protocol == "vllm"


def test_a_pd_pod_without_a_pair_key_pairs_within_its_model_serving() -> None:
    ep = endpoint_from_pod(pd_pod("prefill", key=None))
    assert ep is not None and ep.pd_pair_key == "demo"


@pytest.mark.parametrize("role", [None, "", "combined", "Prefill"])
def test_pods_without_a_known_pd_role_are_aggregated(role: str | None) -> None:
    ep = endpoint_from_pod(pd_pod(role))
    assert ep is not None
    assert (ep.pd_role, ep.bootstrap_port) == (None, None)
