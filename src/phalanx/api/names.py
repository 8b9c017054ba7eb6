"""Names Phalanx generates, and the Kubernetes rules they must follow.

Pods are named like Kthena's: `<servingName>-<groupIndex>-<roleName>-<roleIndex>-<podIndex>`,
entry pod at podIndex 0. The entry pod's name is also the name of its role instance's headless
Service, so it must be a DNS-1035 label.

Every pod also has a DNS name of its own, the way LeaderWorkerSet gives one: `hostname` +
`subdomain`, the subdomain being a headless Service per role of a ServingGroup. The entry pod's
hostname is its role instance's name and worker i's is that name + `-i` (its pod name), so a
program that derives worker names from the entry's address (`<first label>-<i>.<rest>`) reaches
the workers of its own role instance. None is longer than the longest pod name.
"""

from __future__ import annotations

import hashlib
import re

DNS_LABEL_MAX = 63
ANNOTATIONS_MAX_BYTES = 256 * 1024  # all of an object's annotations, keys and values (apimachinery)
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def is_dns1123_label(value: str) -> bool:
    return len(value) <= DNS_LABEL_MAX and bool(_DNS1123_LABEL.fullmatch(value))


def is_dns1035_label(value: str) -> bool:
    return len(value) <= DNS_LABEL_MAX and bool(_DNS1035_LABEL.fullmatch(value))


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(_DNS1123_SUBDOMAIN.fullmatch(value))


def is_label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix)):
        return False
    return len(name) <= DNS_LABEL_MAX and bool(_LABEL_NAME.fullmatch(name))


def is_label_value(value: str) -> bool:
    return value == "" or (len(value) <= DNS_LABEL_MAX and bool(_LABEL_NAME.fullmatch(value)))


def annotations_size(annotations: dict[str, str]) -> int:
    """What the API server counts against ANNOTATIONS_MAX_BYTES: the bytes of every key and value."""
    return sum(len(key.encode()) + len(str(value).encode()) for key, value in annotations.items())


def group_name(serving: str, group_index: int) -> str:
    """A ServingGroup's name; also the name of its gang PodGroup."""
    return f"{serving}-{group_index}"


def role_instance_name(serving: str, group_index: int, role: str, role_index: int) -> str:
    return f"{serving}-{group_index}-{role}-{role_index}"


def pod_name(serving: str, group_index: int, role: str, role_index: int, pod_index: int) -> str:
    return f"{role_instance_name(serving, group_index, role, role_index)}-{pod_index}"


def entry_service_name(serving: str, group_index: int, role: str, role_index: int) -> str:
    """The headless Service of a role instance: named after, and selecting, its entry pod."""
    return pod_name(serving, group_index, role, role_index, 0)


def entry_address(serving: str, group_index: int, role: str, role_index: int, namespace: str) -> str:
    """DNS name of the entry pod through its headless Service (resolves before it is Ready)."""
    return f"{entry_service_name(serving, group_index, role, role_index)}.{namespace}"


def subdomain_service_name(serving: str, group_index: int, role: str) -> str:
    """The headless Service selecting every pod of one role in one ServingGroup: their subdomain."""
    return f"{serving}-{group_index}-{role}"


def pod_hostname(serving: str, group_index: int, role: str, role_index: int, pod_index: int) -> str:
    """The role instance's name for its entry pod; `<that>-<i>` (the pod's name) for worker i."""
    instance = role_instance_name(serving, group_index, role, role_index)
    return instance if pod_index == 0 else f"{instance}-{pod_index}"


def pod_address(
    serving: str, group_index: int, role: str, role_index: int, pod_index: int, namespace: str
) -> str:
    """A pod's own DNS name, `<hostname>.<subdomain>.<namespace>` (resolves before it is Ready)."""
    host = pod_hostname(serving, group_index, role, role_index, pod_index)
    return f"{host}.{subdomain_service_name(serving, group_index, role)}.{namespace}"


def group_key(namespace: str, entry_pod: str) -> str:
    """LeaderWorkerSet's group key: SHA-1 of `<namespace>/<leader pod name>`, the same on every pod."""
    return hashlib.sha1(f"{namespace}/{entry_pod}".encode(), usedforsecurity=False).hexdigest()
