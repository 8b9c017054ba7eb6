"""`phalanx validate` rejects a ModelServing exactly when the API server would refuse it or its pods.

Generated specs (hypothesis; every rule family of validation, the CRD's structural limits and CEL
rules, and the pod checks of `podrules.py`, each sometimes broken) are created with a server-side
dry run on the real control plane with our CRD installed (strict field validation, as kubectl sends
by default); when the API server stores the ModelServing, the pods `phalanx render` makes of what it
stored (each role's entry pod and a worker pod) are dry-run created too. validate must reject the
spec exactly when one of those is refused. The exceptions, on purpose, are listed in docs/api.md:
validate also refuses images with spaces (Kthena's webhook does) and plugins Phalanx cannot run,
so the generator leaves both out.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from phalanx.api import ModelServing, parse_resource
from phalanx.api.errors import only_errors
from phalanx.controller.desired import pod
from tests.cluster.controlplane import PHALANX_CRDS, ControlPlane, install_crds
from tests.unit.api.kthena import as_phalanx, round_trip
from tests.unit.api.test_kthena import SHAPES

pytestmark = pytest.mark.cluster

MAX_SECONDS = 240.0  # the property test stops trying new examples after this, however many are left
_deadline: dict[str, float] = {}


@pytest.fixture(scope="module")
def namespace(control_plane: ControlPlane) -> str:
    install_crds(control_plane.client(), PHALANX_CRDS)
    # Pods naming a RuntimeClass are refused unless it exists: cluster state, not the spec's fault.
    runtime = {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": "nvidia"},
        "handler": "nvidia",
    }
    code, answer = control_plane.http("POST", "/apis/node.k8s.io/v1/runtimeclasses", body=runtime)
    assert code in (201, 409), answer
    return control_plane.new_namespace("agree")


def dry_run(cp: ControlPlane, path: str, obj: dict[str, Any]) -> tuple[bool, Any]:
    code, body = cp.http("POST", f"{path}?dryRun=All&fieldValidation=Strict", body=obj)
    assert code < 500, (code, body)
    return code < 300, body


def server_verdict(cp: ControlPlane, namespace: str, data: dict[str, Any]) -> tuple[bool, str]:
    """Whether the API server stores the ModelServing and creates its pods, and why not."""
    ok, stored = dry_run(cp, f"/apis/serving.phalanx.dev/v1alpha1/namespaces/{namespace}/modelservings", data)
    if not ok:
        return False, str(stored.get("message") if isinstance(stored, dict) else stored)
    try:
        ms = ModelServing.model_validate(stored)  # what the operator reads: with the CRD's defaults
    except ValueError as exc:
        return True, f"(stored, but Phalanx cannot read it back: {exc})"
    for role in ms.spec.template.roles:
        for pod_index in sorted({0, min(1, role.worker_replicas)}):
            obj = pod(ms, 0, role, 0, pod_index)
            ok, answer = dry_run(cp, f"/api/v1/namespaces/{namespace}/pods", obj)
            if not ok:
                return False, f"pod {obj['metadata']['name']}: {answer.get('message')}"
    return True, ""


# ------------------------------------------------------------------------------------------ generators
# Mostly valid values, now and then a broken one: most specs are valid or break one rule, so the two
# verdicts are compared on that rule rather than on the first obvious mistake.


RARELY = 40  # one value in this many is a broken one: a spec has about one


def sometimes(good: list[Any], bad: list[Any]) -> st.SearchStrategy[Any]:
    # Hypothesis favours the first items of a list (and shrinks towards them): the bad ones go last.
    return st.sampled_from([*(good * RARELY), *bad])


def maybe(draw: st.DrawFn) -> bool:
    return draw(st.booleans())


def unique(draw: st.DrawFn, items: list[Any], key: Any) -> list[Any]:
    """Items unique by `key`, except now and then one repeated (the API server's duplicate checks)."""
    kept = list({key(item): item for item in items}.values())
    if kept and draw(sometimes([False], [True])):
        kept.append(copy.deepcopy(kept[0]))
    return kept


name = st.one_of(
    st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True),
    sometimes(["engine", "decode", "405b", "a" * 13], ["1role", "Decode", "with_underscore", "-x"]),
)
quantity = sometimes(["1", "8", "1500m", "1.5", "1e3", 4, "+2"], ["lots", "-1", "0.5.5"])
port_number = sometimes([80, 8000, 65535], [0, 65536, 2**31, -1])
env_name = sometimes(["MODEL", "model.path", "1ST", "ENTRY_ADDRESS"], ["A=B", "", "WITH\tTAB", "é"])
int_or_percent = sometimes([0, 1, 2, "25%", "100%"], ["150%", "007%", -1, "x"])


@st.composite
def env_var(draw: st.DrawFn) -> dict[str, Any]:
    item: dict[str, Any] = {"name": draw(env_name)}
    kind = draw(sometimes(["value", "field", "configmap"], ["none", "both", "two"]))
    field_path = draw(sometimes(["status.podIP", "metadata.name", "metadata.labels['app']"], ["spec.bogus"]))
    field = {"fieldRef": {"fieldPath": field_path}}
    key_ref = {"name": draw(sometimes(["cfg"], [""])), "key": draw(sometimes(["k"], ["bad key"]))}
    config = {"configMapKeyRef": key_ref}
    if kind in ("value", "both"):
        item["value"] = draw(st.sampled_from(["1", "x"]))
    if kind in ("field", "both"):
        item["valueFrom"] = field
    elif kind == "configmap":
        item["valueFrom"] = config
    elif kind == "none":
        item["valueFrom"] = {}
    elif kind == "two":
        item["valueFrom"] = {**field, **config}
    return item


@st.composite
def volume(draw: st.DrawFn) -> dict[str, Any]:
    item: dict[str, Any] = {"name": draw(sometimes(["cache", "models", "shm"], ["Bad_Name"]))}
    count = draw(sometimes([1], [0, 2]))
    for source in draw(
        st.lists(
            st.sampled_from(["emptyDir", "hostPath", "configMap", "secret"]),
            min_size=count,
            max_size=count,
            unique=True,
        )
    ):
        if source == "emptyDir":
            item["emptyDir"] = {"medium": "Memory", "sizeLimit": draw(quantity)}
        elif source == "hostPath":
            item["hostPath"] = {"path": "/data", "type": draw(sometimes(["Directory", ""], ["Bogus"]))}
        elif source == "configMap":
            mode = draw(sometimes([0o644, 0o777], [777, -1]))
            item["configMap"] = {"name": draw(sometimes(["cfg"], [""])), "defaultMode": mode}
        else:
            path = draw(sometimes(["a", "b/c"], ["../a", "/abs"]))
            item["secret"] = {"secretName": "s", "items": [{"key": "k", "path": path}]}
    return item


@st.composite
def probe(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(sometimes([1], [0, 2]))
    handlers = draw(
        st.lists(
            st.sampled_from(["httpGet", "tcpSocket", "exec"]), min_size=count, max_size=count, unique=True
        )
    )
    out: dict[str, Any] = {}
    for handler in handlers:
        if handler == "exec":
            out["exec"] = {"command": ["true"]}
        else:
            out[handler] = {"port": draw(sometimes([8000, "http"], [0, "Bad Name", 70000]))}
    if maybe(draw):
        out["successThreshold"] = draw(sometimes([1], [2, -1]))
    if maybe(draw):
        out["periodSeconds"] = draw(sometimes([5], [-5]))
    return out


@st.composite
def port(draw: st.DrawFn) -> dict[str, Any]:
    item: dict[str, Any] = {"containerPort": draw(port_number)}
    if maybe(draw):
        item["name"] = draw(sometimes(["http", "metrics"], ["HTTP", "a--b", "x" * 16]))
    if maybe(draw):
        item["protocol"] = draw(sometimes(["TCP", "UDP"], ["HTTP"]))
    if maybe(draw):
        item["hostPort"] = draw(sometimes([item["containerPort"], 0], [9999]))
    return item


@st.composite
def resources(draw: st.DrawFn) -> dict[str, Any]:
    """Limits (requests default to them), requests below or equal, and now and then a rule broken."""
    limits = draw(
        st.fixed_dictionaries(
            {}, optional={"cpu": quantity, "memory": st.just("16Gi"), "nvidia.com/gpu": st.just(8)}
        )
    )
    requests = {name: value for name, value in limits.items() if draw(st.booleans())}
    if "cpu" in requests:
        requests["cpu"] = draw(sometimes(["500m", requests["cpu"]], ["64"]))
    mistake = draw(
        sometimes([None], ["gpu without limit", "half a gpu", "gpu request above", "gpu without a domain"])
    )
    if mistake == "gpu without limit":
        limits.pop("nvidia.com/gpu", None)
        requests["nvidia.com/gpu"] = 1
    elif mistake == "half a gpu":
        limits["nvidia.com/gpu"] = "500m"
    elif mistake == "gpu request above":
        limits["nvidia.com/gpu"], requests["nvidia.com/gpu"] = 1, 2
    elif mistake == "gpu without a domain":
        limits["gpu"] = 1
    return {"limits": limits, "requests": requests}


@st.composite
def container(draw: st.DrawFn, volumes: list[str]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "name": draw(name),
        "image": draw(st.sampled_from(["vllm/vllm-openai:v0.11.1", "busybox"])),
    }
    if maybe(draw):
        ports = draw(st.lists(port(), min_size=1, max_size=2))
        item["ports"] = unique(draw, ports, lambda p: (p["containerPort"], p.get("protocol", "TCP")))
    if maybe(draw):
        item["env"] = unique(draw, draw(st.lists(env_var(), max_size=3)), lambda e: e["name"])
    if maybe(draw):
        mounts = draw(st.lists(sometimes(volumes or [None], ["missing"]), max_size=2))
        mounts = [mount for mount in mounts if mount is not None]
        item["volumeMounts"] = unique(
            draw,
            [
                {"name": mount, "mountPath": draw(st.sampled_from(["/data", "/cache"]))}
                | ({"subPath": draw(sometimes(["a"], ["../b", "/abs"]))} if maybe(draw) else {})
                for mount in mounts
            ],
            lambda m: m["mountPath"],
        )
    if maybe(draw):
        item["resources"] = draw(resources())
    for probe_name in ("readinessProbe", "livenessProbe"):
        if maybe(draw):
            item[probe_name] = draw(probe())
    if maybe(draw):
        item["imagePullPolicy"] = draw(sometimes(["Always", "IfNotPresent"], ["Sometimes"]))
    return item


@st.composite
def pod_template(draw: st.DrawFn) -> dict[str, Any]:
    volumes = unique(draw, draw(st.lists(volume(), max_size=2)), lambda v: v["name"])
    names = [v["name"] for v in volumes]
    containers = unique(draw, draw(st.lists(container(names), min_size=1, max_size=2)), lambda c: c["name"])
    spec: dict[str, Any] = {"containers": containers}
    if volumes:
        spec["volumes"] = volumes
    if maybe(draw):
        init = draw(container(names))
        if init["name"] in {c["name"] for c in containers} and not draw(sometimes([False], [True])):
            init["name"] = "init-" + init["name"][:50]
        spec["initContainers"] = [init]
        if maybe(draw):
            spec["initContainers"][0]["restartPolicy"] = draw(sometimes(["Always"], ["Never"]))
    if maybe(draw):
        spec["restartPolicy"] = draw(sometimes(["Always", "Never"], ["Sometimes"]))
    if maybe(draw):
        spec["activeDeadlineSeconds"] = draw(sometimes([60], [0, 2**63]))
    if maybe(draw):
        spec["hostNetwork"] = draw(st.booleans())
    if maybe(draw):
        spec["nodeSelector"] = {"pool": draw(sometimes(["gpu", "a-b.c"], ["two words", "x" * 64]))}
    if maybe(draw):
        toleration: dict[str, Any] = {
            "key": "nvidia.com/gpu",
            "operator": draw(st.sampled_from(["Exists", "Equal"])),
        }
        if draw(st.booleans()):
            toleration["value"] = "present"  # refused with Exists, fine with Equal
        spec["tolerations"] = [toleration]
    template: dict[str, Any] = {"spec": spec}
    if maybe(draw):
        label_keys, values = sometimes(["app", "tier"], ["bad key"]), sometimes(["llm", ""], ["x" * 64])
        annotation_keys = sometimes(["example.com/a", "Note"], ["bad key!"])
        template["metadata"] = {
            "labels": draw(st.dictionaries(label_keys, values, max_size=2)),
            "annotations": draw(st.dictionaries(annotation_keys, st.just("v"), max_size=2)),
        }
    return template


@st.composite
def role(draw: st.DrawFn) -> dict[str, Any]:
    item: dict[str, Any] = {"name": draw(name), "entryTemplate": draw(pod_template())}
    workers = draw(sometimes([0, 1, 2], [-1]))
    if maybe(draw) or workers:
        item["workerReplicas"] = workers
    if draw(sometimes([workers > 0], [workers <= 0])):
        item["workerTemplate"] = draw(pod_template())
    if maybe(draw):
        item["replicas"] = draw(sometimes([0, 1, 2, 3], [-1, "2", True]))
    for key in ("maxUnavailable", "partition"):
        if draw(st.integers(0, 3)) == 0:
            item[key] = draw(int_or_percent)
    return item


@st.composite
def model_serving(draw: st.DrawFn) -> dict[str, Any]:
    roles = unique(
        draw, draw(st.lists(role(), min_size=1, max_size=draw(sometimes([2, 3], [5])))), lambda r: r["name"]
    )
    spec: dict[str, Any] = {"template": {"roles": roles}}
    if maybe(draw):
        spec["replicas"] = draw(sometimes([0, 1, 2, 3], [-1, "2", 2**63]))
    if maybe(draw):
        spec["schedulerName"] = draw(st.sampled_from(["volcano", "default-scheduler"]))
    if maybe(draw):
        spec["recoveryPolicy"] = draw(sometimes(["ServingGroupRecreate", "RoleRecreate", "None"], ["Never"]))
    if maybe(draw):
        strategy: dict[str, Any] = {
            "type": draw(st.sampled_from(["ServingGroupRollingUpdate", "RoleRollingUpdate"]))
        }
        if maybe(draw):
            keys = st.sampled_from(["maxUnavailable", "maxSurge", "partition"])
            strategy["rollingUpdateConfiguration"] = draw(st.dictionaries(keys, int_or_percent))
        spec["rolloutStrategy"] = strategy
    names = [r["name"] for r in roles]
    if draw(st.integers(0, 3)) == 0:
        keys = draw(st.lists(sometimes(names, ["ghost"]), max_size=5, unique=True))
        spec["template"]["gangPolicy"] = {
            "minRoleReplicas": {k: draw(sometimes([0, 1], [3, -1])) for k in keys}
        }
    if draw(st.integers(0, 3)) == 0:
        policy: dict[str, Any] = {"mode": draw(st.sampled_from(["hard", "soft"]))}
        if maybe(draw):
            policy["highestTierAllowed"] = draw(sometimes([1, 2], [-1]))
        if maybe(draw):
            policy["highestTierName"] = draw(sometimes(["rack"], ["r" * 254]))
        spec["template"]["networkTopology"] = {draw(st.sampled_from(["groupPolicy", "rolePolicy"])): policy}
    if draw(st.integers(0, 4)) == 0:
        spec["plugins"] = [{"name": "lws-standard-labels"}]
    metadata_name = draw(sometimes(["demo", "x" * 40], ["x" * 50, "Demo", "9lives"]))
    return {
        "apiVersion": "serving.phalanx.dev/v1alpha1",
        "kind": "ModelServing",
        "metadata": {"name": metadata_name},
        "spec": spec,
    }


def phalanx_verdict(data: dict[str, Any]) -> tuple[bool, list[str]]:
    _, problems = parse_resource(copy.deepcopy(data))
    errors = only_errors(problems)
    return not errors, [e.render() for e in errors]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(model_serving())
def test_validate_rejects_exactly_what_the_api_server_refuses(
    control_plane: ControlPlane, namespace: str, data: dict[str, Any]
) -> None:
    if time.monotonic() > _deadline.setdefault("end", time.monotonic() + MAX_SECONDS):
        return  # bounded in time as well as in examples
    data = {**data, "metadata": {**data["metadata"], "namespace": namespace}}
    accepted, why = server_verdict(control_plane, namespace, data)
    valid, errors = phalanx_verdict(data)
    event("the API server accepts" if accepted else "the API server refuses")
    assert valid == accepted, (
        f"API server: {'accepts' if accepted else why}\nphalanx validate: {errors or 'valid'}"
    )


def _examples() -> Iterator[tuple[str, dict[str, Any]]]:
    from tests.conftest import minimal_serving

    base = minimal_serving()
    mount = copy.deepcopy(base)
    mount["spec"]["template"]["roles"][0]["entryTemplate"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "cache", "mountPath": "/cache"}
    ]
    yield "a mount of a volume that does not exist", mount
    five = copy.deepcopy(base)
    five["spec"]["template"]["roles"] += [
        {**copy.deepcopy(five["spec"]["template"]["roles"][0]), "name": f"r{i}"} for i in range(4)
    ]
    yield "five roles", five
    mode = copy.deepcopy(base)
    mode["spec"]["template"]["roles"][0]["entryTemplate"]["spec"]["volumes"] = [
        {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 777}}
    ]
    yield "file mode 777 (what YAML 1.2 makes of 0777)", mode
    # Just over the 256 KiB the API server allows for an object's annotations, keys and values together.
    big = {"example.com/a": "x" * (128 * 1024), "example.com/b": "y" * (128 * 1024)}
    annotated = copy.deepcopy(base)
    annotated["metadata"]["annotations"] = big
    yield "annotations over 256 KiB on the ModelServing", annotated
    annotated_pod = copy.deepcopy(base)
    annotated_pod["spec"]["template"]["roles"][0]["entryTemplate"]["metadata"] = {"annotations": big}
    yield "annotations over 256 KiB on a pod template", annotated_pod
    # Found by the property test above: one host port taken by two containers of a pod.
    ports = copy.deepcopy(base)
    pod = ports["spec"]["template"]["roles"][0]["entryTemplate"]["spec"]
    first = pod["containers"][0]
    first["ports"] = [*(first.get("ports") or []), {"containerPort": 80, "hostPort": 80}]
    pod["containers"].append(
        {"name": "side", "image": first["image"], "ports": [{"containerPort": 80, "hostPort": 80}]}
    )
    yield "two containers on one host port", ports


@pytest.mark.parametrize(("case", "data"), list(_examples()), ids=[case for case, _ in _examples()])
def test_the_issues_cases_are_refused_by_both(
    control_plane: ControlPlane, namespace: str, case: str, data: dict[str, Any]
) -> None:
    data = {**data, "metadata": {**data["metadata"], "namespace": namespace}}
    accepted, _ = server_verdict(control_plane, namespace, data)
    valid, errors = phalanx_verdict(data)
    assert not accepted and not valid, (case, errors)


def test_an_exported_object_keeps_a_resource_version_the_api_server_refuses_on_create(
    control_plane: ControlPlane, namespace: str
) -> None:
    """What the warning on server-written metadata says: creating it again fails until it is removed."""
    from tests.conftest import minimal_serving

    data = minimal_serving()
    data["metadata"].update(
        namespace=namespace, name="exported", resourceVersion="12345", uid="u-1", generation=4
    )
    path = f"/apis/serving.phalanx.dev/v1alpha1/namespaces/{namespace}/modelservings"
    code, answer = control_plane.http("POST", path, body=data)
    assert code >= 400 and "resourceVersion should not be set" in str(answer)
    del data["metadata"]["resourceVersion"]
    code, stored = control_plane.http("POST", path, body=data)
    assert code == 201
    assert stored["metadata"]["uid"] != "u-1" and stored["metadata"]["generation"] == 1


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_kthena_objects_read_back_from_a_kthena_cluster_are_accepted_by_both(
    control_plane: ControlPlane, namespace: str, shape: str
) -> None:
    """With Kthena's defaults, metadata and status, only the apiVersion changed: our API server takes
    the object and its pods, and validate agrees."""
    data = as_phalanx(round_trip(SHAPES[shape]))
    data["metadata"]["namespace"] = namespace
    accepted, why = server_verdict(control_plane, namespace, data)
    valid, errors = phalanx_verdict(data)
    assert accepted, why
    assert valid, errors
