"""CustomResourceDefinitions generated from the API models (never written by hand).

The OpenAPI schema of each CRD is the pydantic model's JSON schema turned into a *structural* schema
(every node typed, `$ref`s inlined, no `anyOf` of types, `nullable` dropped so that nulls are pruned
like on built-in types). Pod templates embed the real Kubernetes PodSpec schema shipped with
kubernetes-validate (the one `phalanx validate` checks against), so the API server prunes and
validates pod specs as it does for a Deployment.

Rules that cross fields are `x-kubernetes-validations` (CEL) with the messages and field paths of
`validation.py` / `deployment_validation.py`; `CEL_RULES` lists them so tests can hold the texts
equal. Rules that CEL cannot express (or only at a cost the API server refuses) stay in the operator,
which reports them in the `Valid` status condition.
"""

from __future__ import annotations

import copy
import json
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel

from phalanx.api.autoscalingpolicy import AutoscalingPolicy
from phalanx.api.modeldeployment import ModelDeployment
from phalanx.api.modelserving import ModelServing
from phalanx.api.names import DNS_LABEL_MAX
from phalanx.api.podspec import KUBERNETES_SCHEMA_VERSION, _definitions

GROUP = "serving.phalanx.dev"
VERSION = "v1alpha1"
CATEGORIES = ["phalanx"]
MAX_ROLES = 4
"""Roles per ServingGroup (Kthena's limit too): bounds the cost of every CEL rule that walks roles."""
MAX_ROLE_NAME = DNS_LABEL_MAX
PERCENT_PATTERN = r"^(100|[1-9]?[0-9])%$"
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)"
    r"|(\.[0-9]+))))?$"
)
_DNS1123_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS1035_LABEL = "^[a-z]([-a-z0-9]*[a-z0-9])?$"
_POD_SPEC = "io.k8s.api.core.v1.PodSpec"
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_EMBEDDED_META_FIELDS = ("name", "namespace", "labels", "annotations", "finalizers")
# Keys of `x-kubernetes-list-type: map` lists must be required or defaulted; Kubernetes defaults these.
_LIST_KEY_DEFAULTS = {
    ("io.k8s.api.core.v1.ContainerPort", "protocol"): "TCP",
    ("io.k8s.api.core.v1.LocalObjectReference", "name"): "",
}
_QUANTITY_KEYS = ("description", "anyOf", "pattern", "x-kubernetes-int-or-string")
_DROPPED_K8S_KEYS = frozenset(
    {
        "x-kubernetes-patch-strategy",
        "x-kubernetes-patch-merge-key",
        "x-kubernetes-unions",
        "x-kubernetes-group-version-kind",
        "discriminator",
        "fields-to-discriminateBy",
    }
)

Schema = dict[str, Any]


# --------------------------------------------------------------------------------------------- CEL rules


@dataclass(frozen=True)
class CelRule:
    """One `x-kubernetes-validations` entry.

    `message` is the exact text `validation.py` reports; where that text has values in it,
    `message` is a template with `{}` holes and `message_args` the CEL expressions that fill them
    (rendered as a `messageExpression`). `source` names the Python check it mirrors.
    """

    rule: str
    message: str
    field_path: str | None = None
    message_args: tuple[str, ...] = ()
    reason: str | None = None
    source: str = ""

    def to_schema(self) -> Schema:
        out: Schema = {"rule": self.rule}
        if self.message_args:
            out["messageExpression"] = _message_expression(self.message, self.message_args)
        else:
            out["message"] = self.message
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason:
            out["reason"] = self.reason
        return out

    def render(self, *values: object) -> str:
        """The message with its holes filled by Python values (what the CEL expression yields)."""
        return self.message.format(*values)


def _cel_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _message_expression(template: str, args: tuple[str, ...]) -> str:
    # `'...%s...'.format([...])`, not `'...' + string(x)`: the API server's cost estimator
    # cannot bound a concatenation with string(int) and rejects the CRD.
    pieces = template.split("{}")
    if len(pieces) != len(args) + 1:
        raise ValueError(f"message template {template!r} needs {len(pieces) - 1} arguments, got {len(args)}")
    text = "%s".join(piece.replace("%", "%%") for piece in pieces)
    return f"{_cel_string(text)}.format([{', '.join(args)}])"


def _scaled(value: str, total: str, *, round_up: bool) -> str:
    """CEL for `scaled_value`: an int-or-percent resolved against `total`."""
    percent = f"int({value}.replace('%', ''))"
    scaled = f"({percent} * {total} + 99) / 100" if round_up else f"{percent} * {total} / 100"
    return f"(type({value}) == int ? {value} : {scaled})"


_NAME = "self.metadata.name"
_ROLLING = "self.spec.rolloutStrategy.rollingUpdateConfiguration"
# Under RoleRollingUpdate a rollingUpdateConfiguration is ignored (ModelServingSpec.rolling_update).
_HAS_ROLLING = (
    f"has(self.spec.rolloutStrategy) && self.spec.rolloutStrategy.type != 'RoleRollingUpdate'"
    f" && has({_ROLLING})"
)
_SURGE = f"({_HAS_ROLLING} ? {_scaled(f'{_ROLLING}.maxSurge', 'self.spec.replicas', round_up=True)} : 0)"
# max(replicas + min(surge, replicas) - 1, 0), which is 0 exactly when replicas is 0.
_MAX_GROUP = (
    f"(self.spec.replicas == 0 ? 0"
    f" : self.spec.replicas + ({_SURGE} < self.spec.replicas ? {_SURGE} : self.spec.replicas) - 1)"
)
_LONGEST_POD = (
    f"'%s-%d-%s-%d-%d'.format([{_NAME}, {_MAX_GROUP}, r.name, "
    "r.replicas > 0 ? r.replicas - 1 : 0, r.workerReplicas])"
)
_TOO_LONG = (
    f"size({_NAME}) + size(string({_MAX_GROUP})) + size(r.name)"
    " + size(string(r.replicas > 0 ? r.replicas - 1 : 0)) + size(string(r.workerReplicas))"
    f" + 4 > {DNS_LABEL_MAX}"
)
_FIRST_TOO_LONG = f"self.spec.template.roles.filter(r, {_TOO_LONG})"

MODEL_SERVING_ROOT_RULES = (
    CelRule(
        rule=f"!has({_NAME}) || size({_NAME}) <= {DNS_LABEL_MAX} && {_NAME}.matches('{_DNS1035_LABEL}')",
        message="must be a DNS-1035 label: lowercase letters, digits and '-', starting with a letter, "
        f"at most {DNS_LABEL_MAX} characters (it names the client Service)",
        source="validation._metadata",
    ),
    CelRule(
        rule=f"!has({_NAME}) || !self.spec.template.roles.exists(r, {_TOO_LONG})",
        message="makes pod names too long: '{}' is {} characters, at most "
        f"{DNS_LABEL_MAX} are allowed (a pod name is its hostname, and the entry pod's "
        "name is its headless Service's name)",
        message_args=(
            f"{_FIRST_TOO_LONG}.map(r, {_LONGEST_POD})[0]",
            f"size({_FIRST_TOO_LONG}.map(r, {_LONGEST_POD})[0])",
        ),
        field_path=".spec.template.roles",
        source="validation._generated_names",
    ),
)

_UNAVAILABLE = _scaled("self.rollingUpdateConfiguration.maxUnavailable", "self.replicas", round_up=False)
_SURGE_SPEC = _scaled("self.rollingUpdateConfiguration.maxSurge", "self.replicas", round_up=True)
_STRATEGY = "(has(self.rolloutStrategy) ? self.rolloutStrategy.type : 'ServingGroupRollingUpdate')"
_HAS_CONFIG = "has(self.rolloutStrategy) && has(self.rolloutStrategy.rollingUpdateConfiguration)"
_CONFIG = "self.rolloutStrategy.rollingUpdateConfiguration"

# A role's maxUnavailable counts only under RoleRollingUpdate (a rule on the spec, which sees the type).
_ROLE_UNAVAILABLE = _scaled("r.maxUnavailable", "r.replicas", round_up=False)
_ROLE_ROLL_TO_ZERO = f"has(r.maxUnavailable) && r.replicas != 0 && {_ROLE_UNAVAILABLE} == 0"
_ROLE_ROLL_ABOVE = f"has(r.maxUnavailable) && {_ROLE_UNAVAILABLE} > r.replicas"

MODEL_SERVING_SPEC_RULES = (
    CelRule(
        rule=f"!({_HAS_CONFIG}) || {_STRATEGY} == 'RoleRollingUpdate' || self.replicas == 0"
        f" || {_scaled(f'{_CONFIG}.maxUnavailable', 'self.replicas', round_up=False)} > 0"
        f" || {_scaled(f'{_CONFIG}.maxSurge', 'self.replicas', round_up=True)} > 0",
        message="resolves to 0 with {} replicas while maxSurge is also 0, so a "
        "rollout could never replace a group",
        message_args=("self.replicas",),
        field_path=".rolloutStrategy.rollingUpdateConfiguration.maxUnavailable",
        source="validation._rollout",
    ),
    CelRule(
        rule=f"{_STRATEGY} != 'RoleRollingUpdate' || !self.template.roles.exists(r, {_ROLE_ROLL_TO_ZERO})",
        message="resolves to 0 with {} role replicas, so the role could never roll",
        message_args=(f"self.template.roles.filter(r, {_ROLE_ROLL_TO_ZERO})[0].replicas",),
        field_path=".template.roles",
        source="validation._rollout",
    ),
    CelRule(
        rule=f"{_STRATEGY} != 'RoleRollingUpdate' || !self.template.roles.exists(r, {_ROLE_ROLL_ABOVE})",
        message="is more than the role's replicas ({})",
        message_args=(f"self.template.roles.filter(r, {_ROLE_ROLL_ABOVE})[0].replicas",),
        field_path=".template.roles",
        source="validation._rollout",
    ),
    CelRule(
        rule=f"self.recoveryPolicy != 'ServingGroupRecreate' || {_STRATEGY} != 'RoleRollingUpdate'",
        message="ServingGroupRecreate cannot be combined with rolloutStrategy.type RoleRollingUpdate: "
        "recreating the whole group would undo the per-role rollout",
        field_path=".recoveryPolicy",
        source="validation._recovery",
    ),
)


def _first_duplicate_index() -> str:
    """CEL for the index `validation._roles` names first: roles[i] of the earliest roles[j] (j > i)
    with the same name. Spelt out over the (at most MAX_ROLES) positions: list functions such as
    indexOf make the cost estimate unbounded."""
    cases = [
        (f"size(self.roles) > {j} && self.roles[{j}].name == self.roles[{i}].name", i)
        for j in range(1, MAX_ROLES)
        for i in range(j)
    ]
    expression = "-1"
    for condition, index in reversed(cases):
        expression = f"({condition} ? {index} : {expression})"
    return expression


_MRR = "self.gangPolicy.minRoleReplicas"
_HAS_MRR = f"has(self.gangPolicy) && has({_MRR})"
_GANG_TOO_BIG = f"self.roles.filter(r, r.name in {_MRR} && {_MRR}[r.name] > r.replicas)"

SERVING_GROUP_TEMPLATE_RULES = (
    CelRule(
        rule="self.roles.all(r, self.roles.filter(o, o.name == r.name).size() == 1)",
        message="duplicates the name of roles[{}]",
        message_args=(_first_duplicate_index(),),
        field_path=".roles",
        source="validation._roles",
    ),
    CelRule(
        rule=f"!({_HAS_MRR}) || {_MRR}.all(k, self.roles.exists(r, r.name == k))",
        message="is not the name of a role",
        field_path=".gangPolicy.minRoleReplicas",
        source="validation._gang_policy",
    ),
    CelRule(
        rule=f"!({_HAS_MRR}) || {_MRR}.all(k, {_MRR}[k] >= 0)",
        message="must not be negative",
        field_path=".gangPolicy.minRoleReplicas",
        source="validation._gang_policy",
    ),
    CelRule(
        rule=f"!({_HAS_MRR}) || {_GANG_TOO_BIG}.size() == 0",
        message="is more than role '{}' has replicas ({}), so the gang could never start",
        message_args=(f"{_GANG_TOO_BIG}[0].name", f"{_GANG_TOO_BIG}[0].replicas"),
        field_path=".gangPolicy.minRoleReplicas",
        source="validation._gang_policy",
    ),
)


ROLE_RULES = (
    CelRule(
        rule=f"self.name.matches('{_DNS1123_LABEL}')",
        message="must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending "
        "with a letter or digit",
        field_path=".name",
        source="validation._roles",
    ),
    CelRule(
        rule="self.workerReplicas == 0 || has(self.workerTemplate)",
        message="is required when workerReplicas is {}",
        message_args=("self.workerReplicas",),
        field_path=".workerTemplate",
        reason="FieldValueRequired",
        source="validation._roles",
    ),
)

NETWORK_TOPOLOGY_SPEC_RULES = (
    CelRule(
        rule="!has(self.highestTierAllowed) || !has(self.highestTierName)",
        message="cannot be set together with highestTierAllowed",
        field_path=".highestTierName",
        reason="FieldValueForbidden",
        source="validation._network_topology",
    ),
)

_INSTANCE = "(has(self.instanceType) && self.instanceType != '')"
_CUSTOM = "(has(self.gpusPerNode) || has(self.gpuMemory))"

MODEL_DEPLOYMENT_ROOT_RULES = (
    CelRule(
        rule=f"!has({_NAME}) || size({_NAME}) <= {DNS_LABEL_MAX} && {_NAME}.matches('{_DNS1035_LABEL}')",
        message="must be a DNS-1035 label: lowercase letters, digits and '-', starting with a letter, "
        f"at most {DNS_LABEL_MAX} characters",
        source="deployment_validation._metadata",
    ),
)

MODEL_DEPLOYMENT_SPEC_RULES = (
    CelRule(
        rule=f"!({_INSTANCE} && {_CUSTOM})",
        message="cannot be combined with gpusPerNode/gpuMemory",
        field_path=".instanceType",
        reason="FieldValueForbidden",
        source="deployment_validation._shape",
    ),
    CelRule(
        rule=f"{_INSTANCE} || {_CUSTOM}",
        message="is required: no GPU shape given",
        field_path=".instanceType",
        reason="FieldValueRequired",
        source="deployment_validation._shape",
    ),
    CelRule(
        rule=f"{_INSTANCE} || !has(self.gpuMemory) || has(self.gpusPerNode)",
        message="is required with gpuMemory",
        field_path=".gpusPerNode",
        reason="FieldValueRequired",
        source="deployment_validation._shape",
    ),
    CelRule(
        rule=f"{_INSTANCE} || !has(self.gpusPerNode) || has(self.gpuMemory)",
        message="is required with gpusPerNode",
        field_path=".gpuMemory",
        reason="FieldValueRequired",
        source="deployment_validation._shape",
    ),
    CelRule(
        rule="!has(self.nodes) || !has(self.maxNodes) || self.nodes <= self.maxNodes",
        message="is more than maxNodes ({})",
        message_args=("self.maxNodes",),
        field_path=".nodes",
        source="deployment_validation._shape",
    ),
    CelRule(
        rule="!has(self.image) || self.image != '' && !self.image.contains(' ')",
        message="must be an image reference without spaces",
        field_path=".image",
        source="deployment_validation._engine",
    ),
)

# Where each group of rules is attached: (model, node) -> rules. Nodes are `$defs` names, or
# "<root>" for the resource itself.
_RULES: dict[tuple[str, str], tuple[CelRule, ...]] = {
    ("ModelServing", "<root>"): MODEL_SERVING_ROOT_RULES,
    ("ModelServing", "ModelServingSpec"): MODEL_SERVING_SPEC_RULES,
    ("ModelServing", "ServingGroupTemplate"): SERVING_GROUP_TEMPLATE_RULES,
    ("ModelServing", "Role"): ROLE_RULES,
    ("ModelServing", "NetworkTopologySpec"): NETWORK_TOPOLOGY_SPEC_RULES,
    ("ModelDeployment", "<root>"): MODEL_DEPLOYMENT_ROOT_RULES,
    ("ModelDeployment", "ModelDeploymentSpec"): MODEL_DEPLOYMENT_SPEC_RULES,
}

CEL_RULES: tuple[CelRule, ...] = tuple(dict.fromkeys(rule for rules in _RULES.values() for rule in rules))
"""Every CEL rule in the generated CRDs."""

NOT_IN_CEL: tuple[str, ...] = (
    "metadata.namespace is a DNS-1123 label (the API server enforces this itself)",
    "pod templates: containers have an image without spaces; requests <= limits; extended resources "
    "have request == limit; quantities parse with our messages (lists in a PodSpec are unbounded, so "
    "CEL cost would exceed the budget; the PodSpec schema still checks types and unknown fields)",
    "pod template labels are valid label keys/values (maps are unbounded: cost)",
    "spec.gpuMemory parses as a quantity (the parser's message text varies with the input)",
    "spec.plugins other than lws-standard-labels are errors (Phalanx runs no plugins): the list is "
    "unbounded in Kthena's CRD, so a CEL rule over it would exceed the cost budget",
    "spec.model is a name or {name, config, architecture, ...}: a string-or-object node is untyped in a "
    "structural schema, and CEL rules cannot be attached to untyped nodes",
    "warnings (workerTemplate ignored, partition above replicas, gang policy or topology not enforced "
    "by the scheduler, soft-mode highestTierAllowed, reserved labels/env, launcher ignored, rollout "
    "settings the rollout type ignores, lws-standard-labels): CEL can only reject, and these specs "
    "are valid",
)
"""Checks of `validation.py` / `deployment_validation.py` left to the operator (reported in status)."""


# ------------------------------------------------------------------------------ pydantic -> structural


def _model_classes(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation.__name__ in found:
                return
            found[annotation.__name__] = annotation
            for info in annotation.model_fields.values():
                visit(info.annotation)
            return
        for arg in typing.get_args(annotation):
            visit(arg)

    visit(root)
    return found


def _factory_defaults(cls: type[BaseModel]) -> dict[str, Any]:
    """Defaults of fields built by a model factory (pydantic leaves them out of the JSON schema)."""
    defaults: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        factory = info.default_factory
        if factory is None:
            continue
        value = factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            defaults[info.alias or name] = value.model_dump(by_alias=True, exclude_none=True, mode="json")
    return defaults


@dataclass
class _Converter:
    kind: str
    defs: dict[str, Schema]
    classes: dict[str, type[BaseModel]]
    pod_spec: Schema

    def node(self, schema: Schema, *, def_name: str | None = None) -> Schema:
        schema = dict(schema)
        if schema.get("x-kubernetes-int-or-string") and "pattern" in schema:
            # A quantity (resource.Quantity) whose model writes its own schema.
            return {k: schema[k] for k in _QUANTITY_KEYS if k in schema}
        if "$ref" in schema:
            name = schema.pop("$ref").rsplit("/", 1)[-1]
            target = self.node(self.defs[name], def_name=name)
            return _merge_outer(target, schema)
        if "anyOf" in schema:
            return self._any_of(schema)
        out: Schema = {}
        if "description" in schema:
            out["description"] = schema["description"]
        kind = schema.get("type")
        if kind == "object":
            out.update(self._object(schema, def_name))
        elif kind == "array":
            out["type"] = "array"
            out["items"] = self.node(schema.get("items", {}))
            for key in ("minItems", "maxItems"):
                if key in schema:
                    out[key] = schema[key]
        elif kind in ("string", "integer", "number", "boolean"):
            out["type"] = kind
            for key in ("enum", "minimum", "maximum"):
                if key in schema:
                    out[key] = schema[key]
            if "const" in schema:
                out["enum"] = [schema["const"]]
            # JSON Schema 2020-12 bounds are numbers; OpenAPI 3.0's are flags on minimum/maximum.
            for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
                if key in schema:
                    out[bound] = schema[key]
                    out[key] = True
            for key in ("minLength", "maxLength", "pattern", "format"):
                if key in schema:
                    out[key] = schema[key]
        elif "const" in schema:
            out["type"] = "string"
            out["enum"] = [schema["const"]]
        else:
            raise ValueError(f"{self.kind}: cannot make a structural schema of {schema}")
        if "default" in schema and schema["default"] is not None:
            out["default"] = schema["default"]
        return out

    def _object(self, schema: Schema, def_name: str | None) -> Schema:
        out: Schema = {"type": "object"}
        extra = schema.get("additionalProperties")
        properties = schema.get("properties")
        if properties:
            cls = self.classes.get(def_name or "")
            factory_defaults = _factory_defaults(cls) if cls else {}
            props: Schema = {}
            for key, value in properties.items():
                if def_name == "PodTemplate" and key == "spec":
                    props[key] = copy.deepcopy(self.pod_spec)
                    continue
                if def_name == "ModelDeploymentSpec" and key == "model":
                    props[key] = self._model_ref(value)
                    continue
                if def_name == "Plugin" and key == "config":
                    props[key] = {
                        "description": "The plugin's own settings (any JSON; Phalanx runs no plugins).",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                    continue
                prop = self.node(value)
                if key in factory_defaults and "default" not in prop:
                    prop["default"] = factory_defaults[key]
                described = _DESCRIPTIONS.get((def_name or "", key))
                if described and "description" not in prop:
                    prop["description"] = described
                props[key] = prop
            out["properties"] = props
            if schema.get("required"):
                out["required"] = list(schema["required"])
        elif isinstance(extra, dict):
            out["additionalProperties"] = self.node(extra)
        elif extra is True or not properties:
            out["x-kubernetes-preserve-unknown-fields"] = True
        rules = _RULES.get((self.kind, def_name or ""))
        if rules:
            out["x-kubernetes-validations"] = [rule.to_schema() for rule in rules]
        return out

    def _any_of(self, schema: Schema) -> Schema:
        options = [option for option in schema["anyOf"] if option.get("type") != "null"]
        outer = {k: v for k, v in schema.items() if k not in ("anyOf", "title")}
        if outer.get("default") is None:
            outer.pop("default", None)
        types = sorted(option.get("type", "") for option in options)
        if types == ["integer", "string"]:
            return _int_or_percent(outer)
        if len(options) != 1:
            raise ValueError(f"{self.kind}: a union of {types} has no structural schema")
        merged = {**options[0], **outer}
        return self.node(merged)

    def _model_ref(self, schema: Schema) -> Schema:
        # `model: name` is shorthand for `model: {name: name}`: a string-or-object, which a
        # structural schema cannot type; CEL checks its shape and the operator the rest.
        del schema
        return {
            "description": "A catalog model name, or {name, config, architecture, servedName, revision} "
            "for a model not in the catalog (config: its config.json as written; architecture: the "
            "numbers of that file).",
            "x-kubernetes-preserve-unknown-fields": True,
        }


def _merge_outer(target: Schema, outer: Schema) -> Schema:
    merged = dict(target)
    if "description" in outer:
        merged["description"] = outer["description"]
    if outer.get("default") is not None:
        merged["default"] = outer["default"]
    return merged


def _int_or_percent(outer: Schema) -> Schema:
    out: Schema = {}
    if "description" in outer:
        out["description"] = outer["description"]
    out.update(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "minimum": 0,
            "pattern": PERCENT_PATTERN,
            "maxLength": len("100%"),
            "x-kubernetes-int-or-string": True,
        }
    )
    if outer.get("default") is not None:
        out["default"] = outer["default"]
    return out


_DESCRIPTIONS: dict[tuple[str, str], str] = {
    ("ModelServingSpec", "replicas"): "Number of ServingGroups.",
    ("ModelServingSpec", "schedulerName"): "Scheduler of every pod; volcano gets a Volcano PodGroup per "
    "ServingGroup, scheduler-plugins-scheduler a coscheduling PodGroup, anything else none.",
    ("ModelServingSpec", "recoveryPolicy"): "What is recreated when a pod fails: the whole ServingGroup, "
    "the role instance, or nothing.",
    ("ModelServingSpec", "template"): "The ServingGroup template.",
    ("RollingUpdateConfiguration", "maxUnavailable"): "Groups that may be unavailable during a rollout: "
    "a number or a percentage of replicas (rounded down).",
    ("RollingUpdateConfiguration", "maxSurge"): "Extra groups created during a rollout: a number or a "
    "percentage of replicas (rounded up).",
    ("RollingUpdateConfiguration", "partition"): "Groups with an ordinal below it keep their revision.",
    ("ServingGroupTemplate", "restartGracePeriodSeconds"): "How long a failed pod may recover before the "
    "recovery policy acts.",
    ("ServingGroupTemplate", "roles"): "The roles of a ServingGroup (at most 4, unique names).",
    ("GangPolicy", "minRoleReplicas"): "Role name -> role instances that must be placed together; unset "
    "roles count fully.",
    ("ModelServingSpec", "plugins"): "Kthena's pod plugin chain, accepted for compatibility: Phalanx runs "
    "no plugins (lws-standard-labels is ignored; any other plugin is an error, reported in the Valid "
    "condition).",
    ("Plugin", "name"): "The plugin (Kthena's built-ins: demo-pod-tweaks, lws-standard-labels).",
    ("Plugin", "type"): "Only BuiltIn.",
    ("Role", "name"): "DNS-1123 label, unique within the template.",
    ("Role", "replicas"): "Role instances per ServingGroup.",
    ("Role", "entryTemplate"): "Pod template of the entry pod of each role instance.",
    ("Role", "workerReplicas"): "Worker pods per role instance.",
    ("Role", "workerTemplate"): "Pod template of the workers; required when workerReplicas > 0.",
    ("Role", "maxUnavailable"): "Role-level rollout budget (only with RoleRollingUpdate).",
    ("Role", "partition"): "Role-level partition (only with RoleRollingUpdate).",
    ("Role", "disaggregation"): "Phalanx only: the role's prefill/decode side; what is left out is read "
    "from the entry container's engine flags.",
    ("RoleDisaggregation", "kind"): "prefill or decode; else read from vLLM's --kv-transfer-config kv_role "
    "or SGLang's --disaggregation-mode (never from the role name).",
    ("RoleDisaggregation", "protocol"): "How the router hands a request from prefill to decode: vllm "
    "(kv_transfer_params) or sglang (bootstrap); else read from the engine flags, else vllm.",
    ("RoleDisaggregation", "bootstrapPort"): "SGLang prefill roles: the bootstrap server's port (else "
    "--disaggregation-bootstrap-port, else 8998).",
    ("ServingGroupTemplate", "disaggregation"): "Phalanx only: which prefill and decode pods may pair.",
    ("TemplateDisaggregation", "pairing"): "ModelServing: any prefill pod with any decode pod of the "
    "serving; ServingGroup: only pods of the same ServingGroup.",
    ("PodTemplate", "metadata"): "Labels and annotations of the pods.",
    ("ModelServingStatus", "replicas"): "ServingGroups that exist, surge and deleting ones included.",
    ("ModelServingStatus", "currentReplicas"): "Groups at currentRevision.",
    ("ModelServingStatus", "updatedReplicas"): "Groups at updateRevision.",
    ("ModelServingStatus", "availableReplicas"): "Groups whose every pod is ready.",
    ("ModelServingStatus", "labelSelector"): "Selector of one entry pod per group (scale subresource).",
    ("ModelDeploymentSpec", "engine"): "Serving engine.",
    ("ModelDeploymentSpec", "launcher"): "vllm only: a Ray cluster, or vLLM's native multi-node launcher.",
    ("ModelDeploymentSpec", "instanceType"): "A catalog instance type; or gpusPerNode with gpuMemory.",
    ("ModelDeploymentSpec", "gpuMemory"): "Memory per GPU, e.g. 80Gi.",
    ("ModelDeploymentSpec", "maxNodes"): "Cap on nodes per ServingGroup.",
    ("ModelDeploymentSpec", "nodes"): "Pin the node count per ServingGroup.",
    ("ModelDeploymentSpec", "replicas"): "Number of ServingGroups.",
    ("ModelDeploymentSpec", "engineArgs"): "Appended after the planned engine flags, so they win.",
    ("ModelDeploymentSpec", "modelAccessSecret"): "Secret with key HF_TOKEN.",
    ("ModelDeploymentStatus", "modelServing"): "The ModelServing this deployment owns.",
    ("ModelDeploymentStatus", "plan"): "The planner's decision (nodes, parallelism, engine flags).",
}


# --------------------------------------------------------------------------------- Kubernetes PodSpec


@cache
def pod_spec_schema() -> Schema:
    """The Kubernetes PodSpec (kubernetes-validate's JSON schema) as a structural OpenAPI schema."""
    defs: dict[str, Schema] = _definitions()["$defs"]
    return _k8s_node(defs, defs[_POD_SPEC], (_POD_SPEC,), _POD_SPEC)


def _k8s_node(defs: dict[str, Schema], schema: Schema, stack: tuple[str, ...], owner: str) -> Schema:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in stack:
            raise ValueError(f"recursive schema: {' -> '.join((*stack, name))}")
        target = _k8s_definition(defs, name, (*stack, name))
        if "description" in schema:
            target = {**target, "description": schema["description"]}
        return target
    if "oneOf" in schema:
        return _k8s_one_of(schema)
    out: Schema = {}
    for key, value in schema.items():
        if key in _DROPPED_K8S_KEYS or key == "oneOf":
            continue
        if key == "type":
            types = [value] if isinstance(value, str) else [t for t in value if t != "null"]
            if len(types) != 1:
                raise ValueError(f"{owner}: type {value} has no structural form")
            out["type"] = types[0]
        elif key == "properties":
            props: Schema = {}
            for name, prop in value.items():
                converted = _k8s_node(defs, prop, stack, owner)
                default = _LIST_KEY_DEFAULTS.get((owner, name))
                if default is not None:
                    converted["default"] = default
                props[name] = converted
            out["properties"] = props
        elif key == "items":
            out["items"] = _k8s_node(defs, value, stack, owner)
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out["additionalProperties"] = _k8s_node(defs, value, stack, owner)
        else:
            out[key] = copy.deepcopy(value)
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _k8s_definition(defs: dict[str, Schema], name: str, stack: tuple[str, ...]) -> Schema:
    schema = defs[name]
    if name == _OBJECT_META:
        # An embedded ObjectMeta (ephemeral volume claim templates): the fields a template may set.
        schema = {
            **schema,
            "properties": {k: v for k, v in schema["properties"].items() if k in _EMBEDDED_META_FIELDS},
        }
    return _k8s_node(defs, schema, stack, name)


def _k8s_one_of(schema: Schema) -> Schema:
    types = sorted(t for option in schema["oneOf"] for t in _types(option))
    out: Schema = {}
    if "description" in schema:
        out["description"] = schema["description"]
    if types == ["integer", "string"]:
        out.update({"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True})
    elif types == ["number", "string"]:  # resource.Quantity, as controller-gen writes it
        out.update(
            {
                "anyOf": [{"type": "integer"}, {"type": "string"}],
                "pattern": QUANTITY_PATTERN,
                "x-kubernetes-int-or-string": True,
            }
        )
    else:
        raise ValueError(f"oneOf {types} has no structural form")
    return out


def _types(schema: Schema) -> list[str]:
    value = schema.get("type", [])
    types = [value] if isinstance(value, str) else list(value)
    return [t for t in types if t != "null"]


# ------------------------------------------------------------------------------------------ the CRDs


_KIND_DESCRIPTIONS = {
    "ModelServing": "ServingGroups of gang-scheduled pods serving one model across several nodes.",
    "ModelDeployment": "A model, an engine and a GPU shape; Phalanx plans and owns a ModelServing for it.",
    "AutoscalingPolicy": "Scales a ModelServing, or the roles of one, on queue, engine and latency signals.",
}


def _resource_schema(model: type[BaseModel], kind: str) -> Schema:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    converter = _Converter(
        kind=kind,
        defs=schema.get("$defs", {}),
        classes=_model_classes(model),
        pod_spec=pod_spec_schema(),
    )
    properties = schema["properties"]
    root: Schema = {
        "description": _KIND_DESCRIPTIONS[kind],
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            # Only name and generateName may be constrained here; the bound keeps CEL costs finite.
            "metadata": {
                "type": "object",
                "properties": {"name": {"type": "string", "maxLength": DNS_LABEL_MAX}},
            },
            "spec": converter.node(properties["spec"]),
            "status": converter.node(properties["status"]),
        },
        "required": ["spec"],
    }
    rules = _RULES.get((kind, "<root>"))
    if rules:
        root["x-kubernetes-validations"] = [rule.to_schema() for rule in rules]
    _bound(root)
    return root


def _bound(root: Schema) -> None:
    """Limits that keep the CEL cost estimate inside the API server's budget."""
    template = root["properties"]["spec"]["properties"].get("template")
    if template is not None:
        roles = template["properties"]["roles"]
        roles["maxItems"] = MAX_ROLES
        roles["items"]["properties"]["name"]["maxLength"] = MAX_ROLE_NAME
        gang = template["properties"]["gangPolicy"]["properties"]["minRoleReplicas"]
        gang["maxProperties"] = MAX_ROLES


def _crd(
    model: type[BaseModel],
    *,
    kind: str,
    plural: str,
    short_names: list[str],
    columns: list[dict[str, Any]],
    scale: bool,
) -> dict[str, Any]:
    subresources: dict[str, Any] = {"status": {}}
    if scale:
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.labelSelector",
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "annotations": {
                "serving.phalanx.dev/generated-by": "hack/gen-crds.py from phalanx.api.crd",
                "serving.phalanx.dev/pod-spec-schema": f"kubernetes-{KUBERNETES_SCHEMA_VERSION}",
            },
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": CATEGORIES,
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    # A JSON round trip: nodes shared between fields would be YAML anchors.
                    "schema": {"openAPIV3Schema": json.loads(json.dumps(_resource_schema(model, kind)))},
                    "subresources": subresources,
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


def _column(name: str, kind: str, path: str, description: str, priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": kind, "jsonPath": path, "description": description}
    if priority:
        column["priority"] = priority
    return column


_AGE = _column("Age", "date", ".metadata.creationTimestamp", "Time since the object was created.")


def crd_for_model_serving() -> dict[str, Any]:
    return _crd(
        ModelServing,
        kind="ModelServing",
        plural="modelservings",
        short_names=["msv"],
        scale=True,
        columns=[
            _column("Replicas", "integer", ".spec.replicas", "Desired ServingGroups.", priority=1),
            _column(
                "Ready", "integer", ".status.availableReplicas", "ServingGroups whose every pod is ready."
            ),
            _column(
                "Available",
                "string",
                '.status.conditions[?(@.type=="Available")].status',
                "Status of the Available condition.",
            ),
            _column("Updated", "integer", ".status.updatedReplicas", "ServingGroups at the update revision."),
            _column("Revision", "string", ".status.updateRevision", "The update revision.", priority=1),
            _AGE,
        ],
    )


def crd_for_model_deployment() -> dict[str, Any]:
    return _crd(
        ModelDeployment,
        kind="ModelDeployment",
        plural="modeldeployments",
        short_names=["mdep"],
        scale=False,
        columns=[
            _column("Model", "string", ".spec.model", "The model (catalog name or Hugging Face id)."),
            _column("Engine", "string", ".spec.engine", "Serving engine."),
            _column("Replicas", "integer", ".spec.replicas", "Desired ServingGroups."),
            _column(
                "Planned",
                "string",
                '.status.conditions[?(@.type=="Planned")].status',
                "Status of the Planned condition.",
            ),
            _column("Serving", "string", ".status.modelServing", "The ModelServing it owns.", priority=1),
            _AGE,
        ],
    )


def crd_for_autoscaling_policy() -> dict[str, Any]:
    return _crd(
        AutoscalingPolicy,
        kind="AutoscalingPolicy",
        plural="autoscalingpolicies",
        short_names=["asp"],
        scale=False,
        columns=[
            _column(
                "Ready",
                "string",
                '.status.conditions[?(@.type=="Ready")].status',
                "Status of the Ready condition.",
            ),
            _column(
                "Desired", "integer", ".status.homogeneousStatus.desiredReplicas", "Desired ServingGroups."
            ),
            _column("Mode", "string", ".status.homogeneousStatus.mode", "Stable or Panic."),
            _AGE,
        ],
    )


def crds() -> list[dict[str, Any]]:
    return [crd_for_model_serving(), crd_for_model_deployment(), crd_for_autoscaling_policy()]


_CRD_OF_KIND = {
    "ModelServing": crd_for_model_serving,
    "ModelDeployment": crd_for_model_deployment,
    "AutoscalingPolicy": crd_for_autoscaling_policy,
}


@cache
def openapi_schema(kind: str) -> Schema:
    """The openAPIV3Schema the API server checks objects of `kind` against."""
    crd = _CRD_OF_KIND.get(kind, crd_for_model_deployment)()
    schema: Schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def iter_schema_nodes(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node with its path (for checks and tests)."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from iter_schema_nodes(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from iter_schema_nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from iter_schema_nodes(schema["additionalProperties"], f"{path}{{}}")
    for key in ("anyOf", "allOf", "oneOf"):
        for index, child in enumerate(schema.get(key, [])):
            yield from iter_schema_nodes(child, f"{path}<{key}{index}>")


def crd_file_name(crd: dict[str, Any]) -> str:
    """Kubebuilder's file naming: `<group>_<plural>.yaml`."""
    spec = crd["spec"]
    return f"{spec['group']}_{spec['names']['plural']}.yaml"


def crd_yaml(crd: dict[str, Any]) -> str:
    """One CRD as YAML: block style, keys in insertion order, no line wrapping (deterministic)."""
    from io import StringIO

    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    yaml.width = 1 << 20
    stream = StringIO()
    stream.write("# Generated by hack/gen-crds.py from src/phalanx/api (phalanx.api.crd). Do not edit.\n")
    yaml.dump(crd, stream)
    return stream.getvalue()
