"""Pod identity for manifests written for Kthena or LeaderWorkerSet: pure functions over the spec.

Kthena's labels (`modelserving.volcano.sh/*`) carry Kthena's values, so its affinity terms,
monitoring selectors and downward-API env work unchanged. For LeaderWorkerSet (LWS) a role
instance is the LWS group: the LWS name is the ModelServing's and the group index the
ServingGroup's (as Kthena's own LWS integration labels them, so the Services LWS users write,
selecting `leaderworkerset.sigs.k8s.io/name: <name>`, select the imported pods), the group key
tells role instances apart, and `LWS_LEADER_ADDRESS` is the entry pod's own DNS name.
"""

from __future__ import annotations

from phalanx.api import labels as L
from phalanx.api.modelserving import ModelServing, Role
from phalanx.api.names import (
    group_key,
    group_name,
    pod_address,
    pod_hostname,
    pod_name,
    subdomain_service_name,
)


def kthena_group_labels(ms: ModelServing, group_index: int) -> dict[str, str]:
    """On Kthena's PodGroups (and everything below them)."""
    return {L.KTHENA_NAME: ms.name, L.KTHENA_GROUP_NAME: group_name(ms.name, group_index)}


def kthena_role_labels(ms: ModelServing, group_index: int, role: Role) -> dict[str, str]:
    return {**kthena_group_labels(ms, group_index), L.KTHENA_ROLE: role.name}


def kthena_instance_labels(ms: ModelServing, group_index: int, role: Role, role_index: int) -> dict[str, str]:
    """On Kthena's role-instance headless Services and pods."""
    return {**kthena_role_labels(ms, group_index, role), L.KTHENA_ROLE_ID: f"{role.name}-{role_index}"}


def compat_pod_labels(
    ms: ModelServing,
    group_index: int,
    role: Role,
    role_index: int,
    pod_index: int,
    revisions: tuple[str, str],
) -> dict[str, str]:
    """The compatibility label set of one pod; `revisions` = (group revision, role revision)."""
    labels = kthena_instance_labels(ms, group_index, role, role_index)
    if pod_index == 0:
        labels[L.KTHENA_ENTRY] = "true"  # Kthena labels entry pods only
    labels[L.KTHENA_REVISION], labels[L.KTHENA_ROLE_TEMPLATE_HASH] = revisions
    entry = pod_name(ms.name, group_index, role.name, role_index, 0)
    labels.update(
        {
            L.LWS_NAME: ms.name,
            L.LWS_GROUP_INDEX: str(group_index),
            L.LWS_GROUP_KEY: group_key(ms.namespace, entry),
            L.LWS_WORKER_INDEX: str(pod_index),
        }
    )
    return labels


def compat_pod_annotations(
    ms: ModelServing, group_index: int, role: Role, role_index: int, pod_index: int
) -> dict[str, str]:
    annotations = {L.LWS_SIZE_ANNOTATION: str(role.group_size)}
    if pod_index > 0:
        annotations[L.LWS_LEADER_NAME_ANNOTATION] = pod_name(ms.name, group_index, role.name, role_index, 0)
    return annotations


def dns_identity(
    ms: ModelServing, group_index: int, role: Role, role_index: int, pod_index: int
) -> dict[str, str]:
    """The pod spec fields that give a pod its own DNS name through the role's headless Service."""
    return {
        "hostname": pod_hostname(ms.name, group_index, role.name, role_index, pod_index),
        "subdomain": subdomain_service_name(ms.name, group_index, role.name),
    }


def lws_env(
    ms: ModelServing, group_index: int, role: Role, role_index: int, pod_index: int
) -> dict[str, str]:
    return {
        L.ENV_LWS_LEADER_ADDRESS: pod_address(ms.name, group_index, role.name, role_index, 0, ms.namespace),
        L.ENV_LWS_GROUP_SIZE: str(role.group_size),
        L.ENV_LWS_WORKER_INDEX: str(pod_index),
    }
