"""From YAML text to typed resources, collecting every problem with its line number."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from phalanx.api.autoscaling_validation import check_target, parse_autoscaling_policy
from phalanx.api.autoscalingpolicy import AutoscalingPolicy
from phalanx.api.crd import openapi_schema
from phalanx.api.deployment_validation import validate_model_deployment
from phalanx.api.errors import FieldError, Path, SpecError
from phalanx.api.labels import GROUP_VERSION
from phalanx.api.modeldeployment import ModelDeployment
from phalanx.api.modelserving import ModelServing
from phalanx.api.podspec import validate_pod_spec
from phalanx.api.schema_errors import translate
from phalanx.api.structural import structural_problems
from phalanx.api.validation import validate_model_serving
from phalanx.api.yamlfile import Document, parse_yaml

Resource = ModelServing | ModelDeployment
# More checks of a parsed resource that this layer cannot make itself (the compiler's catalog and planning
# checks of a ModelDeployment); their problems are located and reported with the others.
Check = Callable[[Resource], list[FieldError]]
KINDS: dict[str, type[BaseModel]] = {"ModelServing": ModelServing, "ModelDeployment": ModelDeployment}
_KTHENA_GROUPS = ("workload.serving.volcano.sh/", "workload.volcano.sh/", "workload.matrixinfer.ai/")


@dataclass(frozen=True)
class Loaded:
    """The resources of one file, and every problem found (warnings included)."""

    resources: list[Resource] = field(default_factory=list)
    problems: list[FieldError] = field(default_factory=list)
    source: str | None = None
    # Read and checked; nothing acts on them yet (they are not resources a runtime serves).
    policies: list[AutoscalingPolicy] = field(default_factory=list)

    @property
    def errors(self) -> list[FieldError]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[FieldError]:
        return [p for p in self.problems if p.severity == "warning"]

    def raise_for_errors(self) -> None:
        if self.errors:
            raise SpecError(self.errors, self.source)


def _header_problems(data: Any) -> list[FieldError]:
    if not isinstance(data, dict):
        return [
            FieldError(
                (),
                "is not a Kubernetes object (expected a mapping with apiVersion and kind)",
                fix="check the file",
            )
        ]
    problems: list[FieldError] = []
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if api_version != GROUP_VERSION:
        if isinstance(api_version, str) and api_version.startswith(_KTHENA_GROUPS):
            fix = f"change apiVersion to {GROUP_VERSION}; the rest of a Kthena manifest is accepted as it is"
        else:
            fix = f"set apiVersion: {GROUP_VERSION}"
        problems.append(
            FieldError(("apiVersion",), "is not a Phalanx API version", value=api_version, fix=fix)
        )
    if not isinstance(kind, str) or kind not in KINDS:
        problems.append(
            FieldError(
                ("kind",),
                "is not a Phalanx resource",
                value=kind,
                fix="use kind ModelServing or ModelDeployment",
            )
        )
    return problems


def _pod_template_problems(data: dict[str, Any]) -> list[FieldError]:
    """Pod spec schema problems, found even when other fields fail to parse."""
    problems: list[FieldError] = []
    template = (data.get("spec") or {}).get("template") if isinstance(data.get("spec"), dict) else None
    roles = template.get("roles") if isinstance(template, dict) else None
    if not isinstance(roles, list):
        return problems
    for index, role in enumerate(roles):
        if not isinstance(role, dict):
            continue
        for key in ("entryTemplate", "workerTemplate"):
            pod_template = role.get(key)
            if isinstance(pod_template, dict) and isinstance(pod_template.get("spec"), dict):
                prefix = ("spec", "template", "roles", index, key, "spec")
                problems += [p.under(prefix) for p in validate_pod_spec(pod_template["spec"])]
    return problems


def _semantic(resource: BaseModel, check: Check | None = None) -> list[FieldError]:
    if isinstance(resource, ModelServing):
        problems = validate_model_serving(resource)
    else:
        assert isinstance(resource, ModelDeployment)
        problems = validate_model_deployment(resource)
    if check is None:
        return problems
    broken = [p.path for p in problems if p.severity == "error"]
    return problems + [p for p in check(resource) if not any(p.path[: len(b)] == b for b in broken)]


def _without(data: Any, paths: list[Path]) -> Any | None:
    """A copy of `data` with the fields at `paths` removed, so their defaults apply; None if a
    path cannot be removed (a missing required field, or a bad list item)."""
    repaired = copy.deepcopy(data)
    for path in paths:
        if not path or isinstance(path[-1], int):
            return None
        parent = repaired
        for part in path[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                return None
        if not isinstance(parent, dict) or path[-1] not in parent:
            return None
        del parent[path[-1]]
    return repaired


def _best_effort_semantic(
    model: type[BaseModel], data: Any, reported: list[FieldError], check: Check | None = None
) -> list[FieldError]:
    """Run the cross-field checks on the spec minus its broken fields, so one run reports all.

    Problems under a field that already has an error are dropped: they would only repeat it.
    """
    candidate = _without(data, [p.path for p in reported])
    if candidate is None:
        return []
    try:
        resource = model.model_validate(candidate, strict=True)
    except ValidationError:
        return []
    broken = [p.path for p in reported]
    return [p for p in _semantic(resource, check) if not any(p.path[: len(path)] == path for path in broken)]


def _with_limits(problems: list[FieldError], limits: list[FieldError]) -> list[FieldError]:
    """Add the CRD's structural limits that no other check already reported at the same field."""
    reported = {p.path for p in problems if p.severity == "error"}
    return problems + [p for p in limits if p.path not in reported]


def parse_resource(data: Any, check: Check | None = None) -> tuple[Resource | None, list[FieldError]]:
    """One object (a dict, as from YAML or the API server) -> typed resource plus problems (and `check`'s)."""
    problems = _header_problems(data)
    if problems:
        return None, problems
    model = KINDS[data["kind"]]
    data = copy.deepcopy(data)  # the resource must not share free-form fields with the caller's data
    limits = structural_problems(data, openapi_schema(data["kind"]))
    try:
        # Strict: JSON types as the API server checks them ("2" or true is not a number).
        resource = model.model_validate(data, strict=True)
    except ValidationError as exc:
        problems = translate(exc, model)
        if data["kind"] == "ModelServing":
            problems += _pod_template_problems(data)
        problems += _best_effort_semantic(model, data, problems, check)
        return None, _with_limits(problems, limits)
    assert isinstance(resource, ModelServing | ModelDeployment)
    return resource, _with_limits(_semantic(resource, check), limits)


# ObjectMeta fields only an API server writes: present when a file was read from a cluster.
_SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
)


def _read_from_a_cluster(data: Any) -> tuple[Any, list[FieldError]]:
    """A file written by `kubectl get -o yaml` carries a status and the server's metadata: both have no
    effect, so they are warnings, and the status is dropped (as the API server drops it on create)."""
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str) or data["kind"] not in KINDS:
        return data, []
    problems: list[FieldError] = []
    if "status" in data:
        data = {key: value for key, value in data.items() if key != "status"}
        problems.append(
            FieldError(
                ("status",),
                "is ignored: the controller writes the status (the API server ignores it on create and "
                "update, and so does phalanx up)",
                severity="warning",
                fix="remove it",
            )
        )
    metadata = data.get("metadata")
    written = [
        key for key in _SERVER_METADATA if isinstance(metadata, dict) and metadata.get(key) is not None
    ]
    if written:
        problems.append(
            FieldError(
                ("metadata",),
                f"holds what the API server of the cluster it was read from wrote ({', '.join(written)}): "
                "it has no effect on the spec",
                severity="warning",
                fix="remove those fields before creating the object again (an API server refuses to "
                "create an object that has a resourceVersion)",
            )
        )
    return data, problems


def _located(document: Document, problems: list[FieldError]) -> list[FieldError]:
    return [document.locate(problem) for problem in problems]


def load_text(text: str, source: str | None = None, check: Check | None = None) -> Loaded:
    """Parse every document of a YAML file; YAML syntax errors come back as problems too.

    `check` adds the problems of further checks of each resource, located like the others.
    """
    try:
        documents = parse_yaml(text, source)
    except SpecError as exc:
        return Loaded(problems=list(exc.errors), source=source)
    if not documents:
        return Loaded(
            problems=[
                FieldError((), "the file holds no YAML document", fix="add a ModelServing or ModelDeployment")
            ],
            source=source,
        )
    resources: list[Resource] = []
    problems: list[FieldError] = []
    policies: list[tuple[Document, AutoscalingPolicy]] = []
    for document in documents:
        problems += document.problems
        if isinstance(document.data, dict) and document.data.get("kind") == "AutoscalingPolicy":
            policy, parsed = parse_autoscaling_policy(document.data)
            problems += _located(document, parsed)
            if policy is not None:
                policies.append((document, policy))
            continue
        data, found = _read_from_a_cluster(document.data)
        resource, parsed = parse_resource(data, check)
        problems += _located(document, found + parsed)
        if resource is not None:
            resources.append(resource)
    problems += _policy_targets(policies, resources)
    problems.sort(key=lambda p: (p.document, p.line or 0, p.column or 0))
    return Loaded(resources=resources, problems=problems, source=source, policies=[p for _, p in policies])


def _policy_targets(
    policies: list[tuple[Document, AutoscalingPolicy]], resources: list[Resource]
) -> list[FieldError]:
    """A policy checked against a ModelServing of the same file that it names (its roles)."""
    servings = {(r.metadata.namespace, r.metadata.name): r for r in resources if isinstance(r, ModelServing)}
    problems: list[FieldError] = []
    for document, policy in policies:
        spec = policy.spec
        ref = spec.homogeneous_target.target.target_ref if spec.homogeneous_target else None
        ref = spec.disaggregated_target.target_ref if spec.disaggregated_target else ref
        serving = servings.get((policy.metadata.namespace, ref.name)) if ref is not None else None
        if serving is not None:
            problems += _located(document, check_target(policy, serving))
    return problems
