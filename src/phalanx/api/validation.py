"""Checks on a parsed ModelServing that one field alone cannot express.

Covers the checks of Kthena's admission webhook, plus the ones it misses: generated names, gang
policy bounds, rollout budgets that can never progress, and settings that are silently ignored.
A field that has no effect is a warning, never an error (Kthena's CRD defaults some onto every
object; docs/api.md lists where that differs from Kthena's webhook). Problems are returned all at
once, each with its path, value and fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from phalanx.api.base import scaled_value
from phalanx.api.disaggregation import PD_POD_KEYS
from phalanx.api.disaggregation_checks import disaggregation_problems
from phalanx.api.errors import FieldError, Path
from phalanx.api.labels import INJECTED_ENV, RESERVED_POD_LABELS
from phalanx.api.modelserving import ModelServing, PodTemplate, Role
from phalanx.api.names import (
    ANNOTATIONS_MAX_BYTES,
    DNS_LABEL_MAX,
    annotations_size,
    is_dns1035_label,
    is_dns1123_label,
    is_label_key,
    is_label_value,
    pod_name,
)
from phalanx.api.podrules import pod_template_problems
from phalanx.api.podspec import validate_pod_spec
from phalanx.api.quantity import QuantityError, parse_quantity

_TEMPLATE: Path = ("spec", "template")
_ROLLING: Path = ("spec", "rolloutStrategy", "rollingUpdateConfiguration")


def validate_model_serving(ms: ModelServing) -> list[FieldError]:
    checks = (
        _metadata,
        _roles,
        _generated_names,
        _rollout,
        _recovery,
        _gang_policy,
        _network_topology,
        _pod_identity,
        _plugins,
        disaggregation_problems,
    )
    problems: list[FieldError] = []
    for check in checks:
        problems.extend(check(ms))
    for index, role in enumerate(ms.spec.template.roles):
        role_path: Path = (*_TEMPLATE, "roles", index)
        problems.extend(_pod_template(ms, role.entry_template, (*role_path, "entryTemplate")))
        if role.worker_template is not None:
            # With no workers it renders no pod: only what the CRD itself checks applies.
            renders = role.worker_replicas > 0
            problems.extend(_pod_template(ms, role.worker_template, (*role_path, "workerTemplate"), renders))
    return problems


def _metadata(ms: ModelServing) -> Iterator[FieldError]:
    name = ms.metadata.name
    if not name:
        yield FieldError(("metadata", "name"), "is required", fix="give the ModelServing a name")
    elif not is_dns1035_label(name):
        yield FieldError(
            ("metadata", "name"),
            "must be a DNS-1035 label: lowercase letters, digits and '-', starting with a letter, "
            f"at most {DNS_LABEL_MAX} characters (it names the client Service)",
            value=name,
            fix="use a name like 'llama-70b'",
        )
    if not is_dns1123_label(ms.metadata.namespace):
        yield FieldError(
            ("metadata", "namespace"),
            "must be a DNS-1123 label",
            value=ms.metadata.namespace,
            fix="use a namespace like 'default'",
        )
    size = annotations_size(ms.metadata.annotations)
    if size > ANNOTATIONS_MAX_BYTES:
        yield FieldError(
            ("metadata", "annotations"),
            f"hold {size:,} bytes of keys and values; the API server refuses more than "
            f"{ANNOTATIONS_MAX_BYTES:,}",
            fix="keep large content out of annotations (a ConfigMap, or the spec itself)",
        )


def _roles(ms: ModelServing) -> Iterator[FieldError]:
    seen: dict[str, int] = {}
    for index, role in enumerate(ms.spec.template.roles):
        path: Path = (*_TEMPLATE, "roles", index)
        if not is_dns1123_label(role.name):
            yield FieldError(
                (*path, "name"),
                "must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending "
                "with a letter or digit",
                value=role.name,
                fix="use a name like 'decode' or '405b'",
            )
        if role.name in seen:
            yield FieldError(
                (*path, "name"),
                f"duplicates the name of roles[{seen[role.name]}]",
                value=role.name,
                fix="give every role a unique name",
            )
        seen.setdefault(role.name, index)
        if role.worker_replicas > 0 and role.worker_template is None:
            yield FieldError(
                (*path, "workerTemplate"),
                f"is required when workerReplicas is {role.worker_replicas}",
                fix="add a workerTemplate for the worker pods, or set workerReplicas: 0",
            )
        if role.worker_replicas == 0 and role.worker_template is not None:
            yield FieldError(
                (*path, "workerTemplate"),
                "is ignored because workerReplicas is 0",
                severity="warning",
                fix="set workerReplicas to the number of worker pods per role instance, or remove it",
            )


def _longest_pod_name(ms: ModelServing, role: Role) -> str:
    rolling = ms.spec.rolling_update
    surge = scaled_value(rolling.max_surge, ms.spec.replicas, round_up=True)
    max_group = max(ms.spec.replicas + min(surge, ms.spec.replicas) - 1, 0)
    return pod_name(ms.name, max_group, role.name, max(role.replicas - 1, 0), role.worker_replicas)


def _generated_names(ms: ModelServing) -> Iterator[FieldError]:
    if not ms.name:
        return
    for index, role in enumerate(ms.spec.template.roles):
        longest = _longest_pod_name(ms, role)
        if len(longest) > DNS_LABEL_MAX:
            budget = DNS_LABEL_MAX - (len(longest) - len(ms.name) - len(role.name))
            yield FieldError(
                (*_TEMPLATE, "roles", index, "name"),
                f"makes pod names too long: '{longest}' is {len(longest)} characters, at most "
                f"{DNS_LABEL_MAX} are allowed (a pod name is its hostname, and the entry pod's "
                "name is its headless Service's name)",
                value=role.name,
                fix=f"keep metadata.name plus the role name within {budget} characters "
                f"(now {len(ms.name)} + {len(role.name)})",
            )


def _rollout(ms: ModelServing) -> Iterator[FieldError]:
    spec = ms.spec
    strategy = spec.rollout_strategy
    config = strategy.rolling_update_configuration
    if strategy.type == "RoleRollingUpdate":
        if config is not None:
            yield FieldError(
                _ROLLING,
                "has no effect with type RoleRollingUpdate: role instances roll with each role's "
                "own maxUnavailable and partition",
                severity="warning",
                fix="move maxUnavailable/partition onto each role, or use type ServingGroupRollingUpdate",
            )
    elif config is not None:
        unavailable = scaled_value(config.max_unavailable, spec.replicas, round_up=False)
        surge = scaled_value(config.max_surge, spec.replicas, round_up=True)
        if spec.replicas > 0 and unavailable == 0 and surge == 0:
            yield FieldError(
                (*_ROLLING, "maxUnavailable"),
                f"resolves to 0 with {spec.replicas} replicas while maxSurge is also 0, so a "
                "rollout could never replace a group",
                value=config.max_unavailable,
                fix="set maxUnavailable to at least 1, or maxSurge to at least 1",
            )
        partition = scaled_value(config.partition, spec.replicas, round_up=True)
        if partition > spec.replicas:
            yield FieldError(
                (*_ROLLING, "partition"),
                f"is larger than replicas ({spec.replicas}): no ServingGroup will be updated",
                value=config.partition,
                severity="warning",
                fix=f"use a partition between 0 and {spec.replicas}",
            )
    for index, role in enumerate(spec.template.roles):
        path: Path = (*_TEMPLATE, "roles", index)
        if strategy.type != "RoleRollingUpdate":
            # Kthena's CRD defaults maxUnavailable: 1 onto every role, so this is common and harmless.
            for field_name, value in (
                ("partition", role.partition),
                ("maxUnavailable", role.max_unavailable),
            ):
                if value is not None:
                    yield FieldError(
                        (*path, field_name),
                        f"has no effect with rolloutStrategy.type {strategy.type}: whole ServingGroups "
                        "roll, with spec.rolloutStrategy.rollingUpdateConfiguration",
                        value=value,
                        severity="warning",
                        fix="remove it, or set spec.rolloutStrategy.type: RoleRollingUpdate",
                    )
            continue
        if role.max_unavailable is not None:
            resolved = scaled_value(role.max_unavailable, role.replicas, round_up=False)
            if role.replicas > 0 and resolved == 0:
                yield FieldError(
                    (*path, "maxUnavailable"),
                    f"resolves to 0 with {role.replicas} role replicas, so the role could never roll",
                    value=role.max_unavailable,
                    fix="use at least 1",
                )
            elif resolved > role.replicas:
                yield FieldError(
                    (*path, "maxUnavailable"),
                    f"is more than the role's replicas ({role.replicas})",
                    value=role.max_unavailable,
                    fix=f"use a value between 1 and {role.replicas}",
                )


def _recovery(ms: ModelServing) -> Iterator[FieldError]:
    if (
        ms.spec.recovery_policy == "ServingGroupRecreate"
        and ms.spec.rollout_strategy.type == "RoleRollingUpdate"
    ):
        yield FieldError(
            ("spec", "recoveryPolicy"),
            "ServingGroupRecreate cannot be combined with rolloutStrategy.type RoleRollingUpdate: "
            "recreating the whole group would undo the per-role rollout",
            value=ms.spec.recovery_policy,
            fix="use recoveryPolicy: RoleRecreate, or rolloutStrategy.type: ServingGroupRollingUpdate",
        )


def _gang_policy(ms: ModelServing) -> Iterator[FieldError]:
    policy = ms.spec.template.gang_policy
    if policy is None:
        return
    path: Path = (*_TEMPLATE, "gangPolicy", "minRoleReplicas")
    names = [role.name for role in ms.spec.template.roles]
    for key, value in policy.min_role_replicas.items():
        role = ms.spec.template.role(key)
        if role is None:
            yield FieldError(
                (*path, key),
                "is not the name of a role",
                value=key,
                fix=f"use one of the role names: {', '.join(names)}",
            )
            continue
        if value < 0:
            yield FieldError((*path, key), "must not be negative", value=value, fix="use 0 or more")
        elif value > role.replicas:
            yield FieldError(
                (*path, key),
                f"is more than role '{key}' has replicas ({role.replicas}), so the gang could never start",
                value=value,
                fix=f"use a value between 0 and {role.replicas}",
            )
    if ms.gang_scheduler == "none" and policy.min_role_replicas:
        yield FieldError(
            path,
            f"is not enforced: schedulerName '{ms.spec.scheduler_name}' has no gang scheduling",
            severity="warning",
            fix="set schedulerName: volcano (or scheduler-plugins-scheduler) to place groups whole",
        )


def _network_topology(ms: ModelServing) -> Iterator[FieldError]:
    topology = ms.spec.template.network_topology
    if topology is None:
        return
    for key, policy in (("groupPolicy", topology.group_policy), ("rolePolicy", topology.role_policy)):
        if policy is None:
            continue
        path: Path = (*_TEMPLATE, "networkTopology", key)
        if policy.highest_tier_allowed is not None and policy.highest_tier_name is not None:
            yield FieldError(
                (*path, "highestTierName"),
                "cannot be set together with highestTierAllowed",
                value=policy.highest_tier_name,
                fix="keep only one of highestTierAllowed and highestTierName",
            )
        if policy.mode == "soft" and policy.highest_tier_allowed is not None:
            yield FieldError(
                (*path, "highestTierAllowed"),
                "is ignored in soft mode",
                value=policy.highest_tier_allowed,
                severity="warning",
                fix="remove it, or use mode: hard",
            )
    if ms.gang_scheduler != "volcano":
        yield FieldError(
            (*_TEMPLATE, "networkTopology"),
            f"is enforced only by Volcano; it has no effect with schedulerName '{ms.spec.scheduler_name}'",
            severity="warning",
            fix="set schedulerName: volcano, or remove networkTopology",
        )


# Kthena's built-in plugins and what each does to the pods it is scoped to.
_LWS_LABELS_PLUGIN = "lws-standard-labels"
_PLUGIN_FIXES = {
    "demo-pod-tweaks": "set what its config holds in the pod templates instead (spec.runtimeClassName, "
    "metadata.annotations, env of every container), then remove the plugin",
}


def _plugins(ms: ModelServing) -> Iterator[FieldError]:
    for index, plugin in enumerate(ms.spec.plugins or []):
        path: Path = ("spec", "plugins", index, "name")
        if plugin.name == _LWS_LABELS_PLUGIN:
            yield FieldError(
                path,
                "has no effect: Phalanx runs no plugins, and Kthena's lws-standard-labels only labels "
                "the pods of a ModelServing that a LeaderWorkerSet owns",
                value=plugin.name,
                severity="warning",
                fix="remove it",
            )
            continue
        yield FieldError(
            path,
            "is a Kthena pod plugin, and Phalanx runs no plugins: the pods would lack what it adds",
            value=plugin.name,
            fix=_PLUGIN_FIXES.get(
                plugin.name,
                "make its changes in the roles' entryTemplate/workerTemplate, then remove the plugin",
            ),
        )


def _pod_template(
    ms: ModelServing, template: PodTemplate, path: Path, renders: bool = True
) -> Iterator[FieldError]:
    schema_problems = [problem.under((*path, "spec")) for problem in validate_pod_spec(template.spec)]
    yield from schema_problems
    if not renders:
        return
    if not schema_problems:  # the pod rules read a template of the right shape
        for problem in pod_template_problems(template.to_dict(), INJECTED_ENV):
            yield problem.under(path)
    if template.metadata is not None:
        for key, value in template.metadata.labels.items():
            label_path: Path = (*path, "metadata", "labels", key)
            if key in PD_POD_KEYS:
                yield _pd_key_warning(label_path)
            elif key in RESERVED_POD_LABELS:
                yield FieldError(
                    label_path,
                    "is set by Phalanx on every pod and would be overwritten",
                    severity="warning",
                    fix="remove it",
                )
            if not is_label_key(key):
                yield FieldError(
                    label_path,
                    "is not a valid label key",
                    value=key,
                    fix="use e.g. 'app' or 'example.com/tier'",
                )
            if not is_label_value(value):
                yield FieldError(
                    label_path,
                    "is not a valid label value (at most 63 letters, digits, '-', '_' or '.')",
                    value=value,
                    fix="shorten or simplify the value",
                )
        for key in template.metadata.annotations:
            if key in PD_POD_KEYS:
                yield _pd_key_warning((*path, "metadata", "annotations", key))
    spec = template.spec
    if spec.get("schedulerName") not in (None, ms.spec.scheduler_name):
        yield FieldError(
            (*path, "spec", "schedulerName"),
            f"is replaced by spec.schedulerName ('{ms.spec.scheduler_name}')",
            value=spec.get("schedulerName"),
            severity="warning",
            fix="remove it and set spec.schedulerName instead",
        )
    for kind in ("initContainers", "containers"):
        containers = spec.get(kind)
        if not isinstance(containers, list):
            continue
        for index, container in enumerate(containers):
            if isinstance(container, dict):
                yield from _container((*path, "spec", kind, index), container)


def _pd_key_warning(path: Path) -> FieldError:
    return FieldError(
        path,
        "is Phalanx's: it is set from the role's prefill/decode kind, and removed from a role that has none",
        severity="warning",
        fix="remove it; set the role's disaggregation.kind (and protocol) instead",
    )


def _container(path: Path, container: dict[str, Any]) -> Iterator[FieldError]:
    image = container.get("image")
    if not image:
        yield FieldError(
            (*path, "image"), "is required", fix="add the container image, e.g. 'vllm/vllm-openai:v0.11.1'"
        )
    elif isinstance(image, str) and (image != image.strip() or " " in image):
        yield FieldError((*path, "image"), "must not contain spaces", value=image, fix="remove the spaces")
    env = container.get("env")
    if isinstance(env, list):
        for index, item in enumerate(env):
            if isinstance(item, dict) and item.get("name") in INJECTED_ENV:
                yield FieldError(
                    (*path, "env", index, "name"),
                    "is injected by Phalanx and will be replaced",
                    value=item.get("name"),
                    severity="warning",
                    fix="remove it; Phalanx sets it for every pod",
                )
    resources = container.get("resources")
    if isinstance(resources, dict):
        yield from _resources((*path, "resources"), resources)


def _resources(path: Path, resources: dict[str, Any]) -> Iterator[FieldError]:
    parsed: dict[str, dict[str, Any]] = {}
    for section in ("requests", "limits"):
        values = resources.get(section)
        if not isinstance(values, dict):
            continue
        parsed[section] = {}
        for name, raw in values.items():
            try:
                parsed[section][name] = parse_quantity(raw)
            except QuantityError as exc:
                yield FieldError(
                    (*path, section, name),
                    str(exc),
                    value=raw,
                    fix="write a quantity like '8', '500m' or '64Gi'",
                )
    requests, limits = parsed.get("requests", {}), parsed.get("limits", {})
    for section, values in parsed.items():
        for name, value in values.items():
            if _is_extended(name) and value != value.to_integral_value():
                yield FieldError(
                    (*path, section, name),
                    "must be a whole number for an extended resource, so the API server would refuse "
                    "the pods",
                    value=resources[section][name],
                    fix="count whole devices, e.g. 1 or 8",
                )
    for name, request in requests.items():
        limit = limits.get(name)
        if limit is None:
            if _is_extended(name):
                yield FieldError(
                    (*path, "limits"),
                    f"has no {name}: an extended resource needs a limit equal to its request, so the API "
                    "server would refuse the pods",
                    fix=f"set limits.{name} to {resources['requests'][name]} (or set only the limit)",
                )
            continue
        if request > limit:
            yield FieldError(
                (*path, "requests", name),
                f"is more than its limit ({resources['limits'][name]})",
                value=resources["requests"][name],
                fix="lower the request or raise the limit",
            )
        elif _is_extended(name) and request != limit:
            yield FieldError(
                (*path, "requests", name),
                f"must equal its limit ({resources['limits'][name]}) for an extended resource",
                value=resources["requests"][name],
                fix="set request and limit to the same value, or only the limit",
            )


_ENTRY_SERVICE_SUFFIX = re.compile(r"^-(0|[1-9][0-9]*)-0$")


def _pod_identity(ms: ModelServing) -> Iterator[FieldError]:
    """Pod DNS names: the role subdomain Services must not take another role's Service name, and
    Phalanx sets every pod's hostname and subdomain (see names.py)."""
    roles = ms.spec.template.roles
    for index, role in enumerate(roles):
        path: Path = (*_TEMPLATE, "roles", index)
        for other in roles:
            suffix = role.name[len(other.name) :] if role.name.startswith(other.name) else ""
            match = _ENTRY_SERVICE_SUFFIX.match(suffix)
            if other is not role and match:
                yield FieldError(
                    (*path, "name"),
                    f"gives its pods' Service in group <g> the name '{ms.name}-<g>-{role.name}', "
                    f"already the entry Service of role '{other.name}' instance {match.group(1)}",
                    value=role.name,
                    fix=f"rename role '{role.name}' so it is not '{other.name}' followed by -<number>-0",
                )
        templates = [("entryTemplate", role.entry_template), ("workerTemplate", role.worker_template)]
        for key, template in templates:
            for field in ("hostname", "subdomain"):
                if template is not None and field in template.spec:
                    yield FieldError(
                        (*path, key, "spec", field),
                        "is replaced: Phalanx gives every pod a hostname and subdomain of its own "
                        "(entry pod <name>-<group>-<role>-<index>, workers that plus -<worker index>)",
                        value=template.spec[field],
                        severity="warning",
                        fix="remove it",
                    )


def _is_extended(name: str) -> bool:
    """A device-like resource (nvidia.com/gpu): never overcommitted, counted in whole units."""
    return (
        "/" in name and not name.startswith(("kubernetes.io/", "requests.")) and ".kubernetes.io/" not in name
    )
