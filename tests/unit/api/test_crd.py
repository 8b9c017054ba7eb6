"""The generated CRDs: structural, in sync with deploy/crds, accept the examples, and carry CEL rules
whose messages are the ones `phalanx validate` prints."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from phalanx.api.crd import (
    CEL_RULES,
    MODEL_DEPLOYMENT_ROOT_RULES,
    MODEL_DEPLOYMENT_SPEC_RULES,
    MODEL_SERVING_ROOT_RULES,
    MODEL_SERVING_SPEC_RULES,
    NETWORK_TOPOLOGY_SPEC_RULES,
    ROLE_RULES,
    SERVING_GROUP_TEMPLATE_RULES,
    CelRule,
    crd_file_name,
    crd_for_model_deployment,
    crd_for_model_serving,
    crd_yaml,
    crds,
    iter_schema_nodes,
)
from phalanx.api.deployment_validation import validate_model_deployment
from phalanx.api.modeldeployment import ModelDeployment
from phalanx.api.modelserving import ModelServing
from phalanx.api.validation import validate_model_serving

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
ETCD_OBJECT_LIMIT = int(1.5 * 1024 * 1024)
# Keys a structural schema may use (apiextensions.k8s.io/v1 JSONSchemaProps, less what CRDs forbid).
ALLOWED_KEYS = {
    "type",
    "format",
    "description",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "anyOf",
    "nullable",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
}


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _structural_problems(schema: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for path, node in iter_schema_nodes(schema):
        if "<anyOf" in path:
            # Inside anyOf only value validations; int-or-string's [{integer}, {string}] is the exception.
            continue
        unknown = set(node) - ALLOWED_KEYS
        if unknown:
            problems.append(f"{path}: keys {sorted(unknown)} (no $ref/definitions/oneOf/allOf)")
        untyped_ok = node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        if "type" not in node and not untyped_ok:
            problems.append(f"{path}: no type")
        if node.get("type") == "object" and "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties together")
        if node.get("type") == "array" and not isinstance(node.get("items"), dict):
            problems.append(f"{path}: array without items")
        if "anyOf" in node:
            if not node.get("x-kubernetes-int-or-string"):
                problems.append(f"{path}: anyOf outside int-or-string")
            elif node["anyOf"] != [{"type": "integer"}, {"type": "string"}]:
                problems.append(f"{path}: int-or-string anyOf must be [integer, string]")
        if node.get("x-kubernetes-list-type") == "map":
            item = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                if key not in item.get("required", []) and "default" not in item["properties"][key]:
                    problems.append(f"{path}: list map key {key} is neither required nor defaulted")
        if node.get("nullable"):
            problems.append(f"{path}: nullable (nulls must be pruned like on built-in types)")
    metadata = schema["properties"]["metadata"]
    if set(metadata.get("properties", {})) - {"name", "generateName"}:
        problems.append(".metadata: only name and generateName may be constrained")
    return problems


@pytest.mark.parametrize("crd", crds(), ids=lambda crd: crd["metadata"]["name"])
def test_schema_is_structural(crd: dict[str, Any]) -> None:
    assert _structural_problems(_schema(crd)) == []
    assert "$ref" not in json.dumps(crd)
    assert "$defs" not in json.dumps(crd)


def test_checker_catches_a_non_structural_schema() -> None:
    bad = {
        "type": "object",
        "properties": {
            "metadata": {"type": "object"},
            "a": {"$ref": "#/$defs/X"},
            "b": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "c": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": {}},
        },
    }
    problems = _structural_problems(bad)
    assert any(".a: keys ['$ref']" in p for p in problems)
    assert any(".b: anyOf outside int-or-string" in p for p in problems)
    assert any(".c: properties and additionalProperties" in p for p in problems)


@pytest.mark.parametrize("crd", crds(), ids=lambda crd: crd["metadata"]["name"])
def test_committed_files_are_the_generators_output(crd: dict[str, Any]) -> None:
    path = ROOT / "deploy" / "crds" / crd_file_name(crd)
    assert path.exists(), "run `python hack/gen-crds.py`"
    assert path.read_text() == crd_yaml(crd), "deploy/crds is stale: run `python hack/gen-crds.py`"
    assert yaml.safe_load(path.read_text()) == crd


def test_only_generated_files_in_deploy_crds() -> None:
    names = {crd_file_name(crd) for crd in crds()}
    assert names == {
        "serving.phalanx.dev_modelservings.yaml",
        "serving.phalanx.dev_modeldeployments.yaml",
        "serving.phalanx.dev_autoscalingpolicies.yaml",
    }
    assert {p.name for p in (ROOT / "deploy" / "crds").glob("*.yaml")} == names


@pytest.mark.parametrize("crd", crds(), ids=lambda crd: crd["metadata"]["name"])
def test_size_within_etcd_limit(crd: dict[str, Any]) -> None:
    assert len(json.dumps(crd, separators=(",", ":"))) < ETCD_OBJECT_LIMIT // 2


def test_names_subresources_and_columns() -> None:
    ms, md = crd_for_model_serving(), crd_for_model_deployment()
    assert ms["metadata"]["name"] == "modelservings.serving.phalanx.dev"
    assert md["metadata"]["name"] == "modeldeployments.serving.phalanx.dev"
    for crd in (ms, md):
        version = crd["spec"]["versions"][0]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
        assert crd["spec"]["names"]["categories"] == ["phalanx"]
        assert version["subresources"]["status"] == {}
        assert version["additionalPrinterColumns"][-1]["jsonPath"] == ".metadata.creationTimestamp"
    # "ms" and "md" are Cluster API's MachineSet and MachineDeployment.
    assert ms["spec"]["names"]["shortNames"] == ["msv"]
    assert md["spec"]["names"]["shortNames"] == ["mdep"]
    version = ms["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.labelSelector",
    }
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Ready"] == ".status.availableReplicas"
    assert columns["Available"] == '.status.conditions[?(@.type=="Available")].status'
    assert columns["Updated"] == ".status.updatedReplicas"
    assert "scale" not in md["spec"]["versions"][0]["subresources"]


def test_defaults_and_bounds_follow_the_models() -> None:
    spec = _schema(crd_for_model_serving())["properties"]["spec"]
    assert spec["properties"]["replicas"] == {
        "type": "integer",
        "minimum": 0,
        "default": 1,
        "description": "Number of ServingGroups.",
    }
    assert spec["properties"]["rolloutStrategy"]["default"] == {"type": "ServingGroupRollingUpdate"}
    assert spec["properties"]["recoveryPolicy"]["enum"] == ["ServingGroupRecreate", "RoleRecreate", "None"]
    roles = spec["properties"]["template"]["properties"]["roles"]
    assert (roles["minItems"], roles["maxItems"]) == (1, 4)
    rolling = spec["properties"]["rolloutStrategy"]["properties"]["rollingUpdateConfiguration"]
    surge = rolling["properties"]["maxSurge"]
    assert surge["x-kubernetes-int-or-string"] is True
    assert surge["default"] == 0
    pod = roles["items"]["properties"]["entryTemplate"]["properties"]["spec"]
    assert pod["properties"]["containers"]["x-kubernetes-list-type"] == "map"
    port = pod["properties"]["containers"]["items"]["properties"]["ports"]["items"]
    assert port["properties"]["protocol"]["default"] == "TCP"
    md_spec = _schema(crd_for_model_deployment())["properties"]["spec"]
    utilization = md_spec["properties"]["gpuMemoryUtilization"]
    assert (utilization["minimum"], utilization["exclusiveMinimum"], utilization["maximum"]) == (0, True, 1)


# ------------------------------------------------------------------ the examples against the schema


def _openapi_to_jsonschema(node: Any) -> Any:
    """Drop x-kubernetes-* keys; closed objects reject unknown fields (kubectl's strict validation)."""
    if isinstance(node, list):
        return [_openapi_to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        key: (value if key in ("enum", "default") else _openapi_to_jsonschema(value))
        for key, value in node.items()
        if not key.startswith("x-kubernetes-")
    }
    if properties := node.get("properties"):
        out["properties"] = {name: _openapi_to_jsonschema(value) for name, value in properties.items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


def _validator(crd: dict[str, Any]) -> jsonschema.protocols.Validator:
    converted = _openapi_to_jsonschema(_schema(crd))
    converted["properties"]["metadata"].pop("additionalProperties", None)
    return jsonschema.Draft4Validator(converted)


VALIDATORS = {"ModelServing": _validator(crd_for_model_serving())}
VALIDATORS["ModelDeployment"] = _validator(crd_for_model_deployment())


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _errors(obj: dict[str, Any]) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in VALIDATORS[obj["kind"]].iter_errors(obj)
    ]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_pass_the_schema(path: Path) -> None:
    documents = [doc for doc in _documents(path) if doc.get("kind") in VALIDATORS]
    assert documents
    for doc in documents:
        assert _errors(doc) == []


def _quickstart() -> dict[str, Any]:
    doc: dict[str, Any] = _documents(ROOT / "examples" / "quickstart.yaml")[0]
    return doc


def test_unknown_field_and_wrong_enum_fail() -> None:
    unknown = _quickstart()
    unknown["spec"]["replica"] = 2
    assert any("'replica' was unexpected" in e for e in _errors(unknown))
    in_pod = _quickstart()
    in_pod["spec"]["template"]["roles"][0]["entryTemplate"]["spec"]["containers"][0]["imagee"] = "x"
    assert any("'imagee' was unexpected" in e for e in _errors(in_pod))
    enum = _quickstart()
    enum["spec"]["recoveryPolicy"] = "Never"
    assert any(e.startswith("spec.recoveryPolicy: 'Never' is not one of") for e in _errors(enum))


@pytest.mark.parametrize(
    ("value", "ok"), [(1, True), ("25%", True), ("100%", True), ("150%", False), (-1, False)]
)
def test_int_or_percent(value: object, ok: bool) -> None:
    doc = _quickstart()
    doc["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]["maxSurge"] = value
    assert (_errors(doc) == []) is ok


# --------------------------------------------------------------------------------------- CEL rules


def _serving(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    doc = _quickstart()
    change(doc)
    return doc


def _role(doc: dict[str, Any], index: int = 0) -> dict[str, Any]:
    role: dict[str, Any] = doc["spec"]["template"]["roles"][index]
    return role


def _role_rolling(doc: dict[str, Any]) -> dict[str, Any]:
    doc["spec"]["rolloutStrategy"] = {"type": "RoleRollingUpdate"}
    return doc


def _deployment(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    doc: dict[str, Any] = _documents(ROOT / "examples" / "quickstart-deployment.yaml")[0]
    change(doc)
    return doc


def _duplicate(doc: dict[str, Any]) -> None:
    roles = doc["spec"]["template"]["roles"]
    roles.extend([{**copy.deepcopy(roles[0]), "name": "other"}, copy.deepcopy(roles[0])])


# rule -> (a resource that breaks it, the values its messageExpression fills in)
CASES: list[tuple[CelRule, dict[str, Any], tuple[object, ...]]] = [
    (MODEL_SERVING_ROOT_RULES[0], _serving(lambda d: d["metadata"].update(name="9-lives")), ()),
    (
        MODEL_SERVING_ROOT_RULES[1],
        _serving(lambda d: (d["metadata"].update(name="a" * 45), _role(d).update(name="b" * 15))),
        ("a" * 45 + "-2-" + "b" * 15 + "-0-1", 67),
    ),
    (
        MODEL_SERVING_SPEC_RULES[0],
        _serving(
            lambda d: d["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"].update(
                maxUnavailable="10%", maxSurge=0
            )
        ),
        (2,),
    ),
    (
        MODEL_SERVING_SPEC_RULES[1],
        _serving(lambda d: (_role_rolling(d), _role(d).update(maxUnavailable="10%", replicas=3))),
        (3,),
    ),
    (
        MODEL_SERVING_SPEC_RULES[2],
        _serving(lambda d: (_role_rolling(d), _role(d).update(maxUnavailable=5, replicas=3))),
        (3,),
    ),
    (
        MODEL_SERVING_SPEC_RULES[3],
        _serving(lambda d: (_role_rolling(d), d["spec"].update(recoveryPolicy="ServingGroupRecreate"))),
        (),
    ),
    (SERVING_GROUP_TEMPLATE_RULES[0], _serving(_duplicate), (0,)),
    (
        SERVING_GROUP_TEMPLATE_RULES[1],
        _serving(lambda d: d["spec"]["template"].update(gangPolicy={"minRoleReplicas": {"nope": 1}})),
        (),
    ),
    (
        SERVING_GROUP_TEMPLATE_RULES[2],
        _serving(lambda d: d["spec"]["template"].update(gangPolicy={"minRoleReplicas": {"sim": -1}})),
        (),
    ),
    (
        SERVING_GROUP_TEMPLATE_RULES[3],
        _serving(lambda d: d["spec"]["template"].update(gangPolicy={"minRoleReplicas": {"sim": 4}})),
        ("sim", 1),
    ),
    (ROLE_RULES[0], _serving(lambda d: _role(d).update(name="Sim")), ()),
    (
        ROLE_RULES[1],
        _serving(lambda d: (_role(d).pop("workerTemplate"), _role(d).update(workerReplicas=3))),
        (3,),
    ),
    (
        NETWORK_TOPOLOGY_SPEC_RULES[0],
        _serving(
            lambda d: d["spec"]["template"].update(
                networkTopology={"groupPolicy": {"highestTierAllowed": 1, "highestTierName": "x"}}
            )
        ),
        (),
    ),
    (MODEL_DEPLOYMENT_ROOT_RULES[0], _deployment(lambda d: d["metadata"].update(name="9-lives")), ()),
    (MODEL_DEPLOYMENT_SPEC_RULES[0], _deployment(lambda d: d["spec"].update(instanceType="Standard_X")), ()),
    (
        MODEL_DEPLOYMENT_SPEC_RULES[1],
        _deployment(lambda d: (d["spec"].pop("gpusPerNode"), d["spec"].pop("gpuMemory"))),
        (),
    ),
    (MODEL_DEPLOYMENT_SPEC_RULES[2], _deployment(lambda d: d["spec"].pop("gpusPerNode")), ()),
    (MODEL_DEPLOYMENT_SPEC_RULES[3], _deployment(lambda d: d["spec"].pop("gpuMemory")), ()),
    (MODEL_DEPLOYMENT_SPEC_RULES[4], _deployment(lambda d: d["spec"].update(nodes=5, maxNodes=2)), (2,)),
    (MODEL_DEPLOYMENT_SPEC_RULES[5], _deployment(lambda d: d["spec"].update(image="a b")), ()),
]


def _python_errors(doc: dict[str, Any]) -> list[tuple[str, str]]:
    if doc["kind"] == "ModelServing":
        problems = validate_model_serving(ModelServing.model_validate(doc))
    else:
        problems = validate_model_deployment(ModelDeployment.model_validate(doc))
    return [(".".join(map(str, p.path)), p.message) for p in problems if p.severity == "error"]


def test_every_rule_has_a_case() -> None:
    assert {id(rule) for rule, _, _ in CASES} == {id(rule) for rule in CEL_RULES}
    assert len(CEL_RULES) == len(CASES)


@pytest.mark.parametrize(("rule", "doc", "args"), CASES, ids=lambda v: getattr(v, "source", None) or "")
def test_cel_message_is_the_python_message(
    rule: CelRule, doc: dict[str, Any], args: tuple[object, ...]
) -> None:
    errors = _python_errors(doc)
    assert rule.render(*args) in [message for _, message in errors], errors
    # The CEL field path is the Python path, or (lists and map keys cannot be indexed) its parent.
    python_path = next(path for path, message in errors if message == rule.render(*args))
    if rule.field_path:
        assert _cel_path(rule, doc["kind"]) in python_path
    # The generated schema passes the OpenAPI part; the CEL rule is what rejects it.
    assert _errors(doc) == [] or rule in ROLE_RULES[:1]


def _cel_path(rule: CelRule, kind: str) -> str:
    owners = {
        id(r): prefix
        for rules, prefix in (
            (MODEL_SERVING_ROOT_RULES, ""),
            (MODEL_DEPLOYMENT_ROOT_RULES, ""),
            (MODEL_SERVING_SPEC_RULES, "spec"),
            (MODEL_DEPLOYMENT_SPEC_RULES, "spec"),
            (SERVING_GROUP_TEMPLATE_RULES, "spec.template"),
            (ROLE_RULES, ""),
            (NETWORK_TOPOLOGY_SPEC_RULES, ""),
        )
        for r in rules
    }
    return (owners[id(rule)] + (rule.field_path or "")).lstrip(".")


@pytest.mark.parametrize("rule", CEL_RULES, ids=lambda rule: rule.source)
def test_rule_is_within_apiserver_limits(rule: CelRule) -> None:
    schema = rule.to_schema()
    # Longer rules are accepted, but these stay readable; the real cost check is the API server's.
    assert len(schema["rule"]) < 2000
    expression = schema.get("messageExpression", "")
    # `'text' + string(n)` has an unbounded estimated cost: the API server rejects the CRD.
    assert not re.search(r"\+\s*string\(", expression), expression
    if rule.message_args:
        assert expression.endswith("])") and ".format([" in expression
    else:
        assert schema["message"] == rule.message


def test_rules_are_in_the_crds() -> None:
    text = json.dumps(crds())
    for rule in CEL_RULES:
        assert json.dumps(rule.to_schema())[1:-1] in text
