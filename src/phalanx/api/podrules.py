"""The API server's own checks on a Pod, applied to the pods a ModelServing's templates render into.

The CRD stores a pod template however odd it is; the API server only refuses it when the operator
creates the pods, long after `kubectl apply` said yes. These are the checks of Kubernetes'
pkg/apis/core/validation (ValidatePodCreate) that a template can fail, each with the path, value and
fix: names of containers, volumes and ports, mounts of volumes that do not exist, env variables,
volume sources and modes, probes, pull and restart policies, and annotation keys. A pod is what
render makes of the template: Phalanx's env variables replace the user's of the same name, and its
labels and annotations are valid by construction, so only the template's own content is checked.
`docs/api.md` lists what is checked; the cluster tier compares the verdicts with the API server's.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection, Iterator
from typing import Any

from phalanx.api.errors import FieldError, Path
from phalanx.api.names import (
    ANNOTATIONS_MAX_BYTES,
    annotations_size,
    is_dns1123_label,
    is_label_key,
    is_label_value,
)
from phalanx.api.quantity import QuantityError, parse_quantity

_PORT_NAME_CHARS = re.compile(r"^[-a-z0-9]+$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_DNS1123_SUBDOMAIN_MAX = 253
_MAX_FILE_MODE = 0o777
_PROTOCOLS = ("TCP", "UDP", "SCTP")
_PULL_POLICIES = ("Always", "Never", "IfNotPresent")
_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
_HOST_PATH_TYPES = (
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
)
_ENV_FIELD_PATHS = frozenset(
    {
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.nodeName",
        "spec.serviceAccountName",
        "status.hostIP",
        "status.hostIPs",
        "status.podIP",
        "status.podIPs",
    }
)
_ENV_SOURCES = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef", "fileKeyRef")
_VOLUME_SOURCE_NAMES = """
hostPath emptyDir gcePersistentDisk awsElasticBlockStore gitRepo secret nfs iscsi glusterfs
persistentVolumeClaim rbd flexVolume cinder cephfs flocker downwardAPI fc azureFile configMap
vsphereVolume quobyte azureDisk photonPersistentDisk projected portworxVolume scaleIO storageos csi
ephemeral image
"""
_VOLUME_SOURCES = _VOLUME_SOURCE_NAMES.split()
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
_PROBE_COUNTS = (
    "initialDelaySeconds",
    "timeoutSeconds",
    "periodSeconds",
    "successThreshold",
    "failureThreshold",
)
_WHY = "so the API server would refuse the pods"


def _error(path: Path, message: str, value: Any, fix: str) -> FieldError:
    return FieldError(path, f"{message}, {_WHY}", value=value, fix=fix)


def _items(value: Any) -> list[tuple[int, dict[str, Any]]]:
    return (
        [(i, item) for i, item in enumerate(value) if isinstance(item, dict)]
        if isinstance(value, list)
        else []
    )


def is_port_name(name: str) -> bool:
    """An IANA service name: at most 15 of a-z, 0-9 and '-', a letter among them, no '--' or edge '-'."""
    return (
        len(name) <= 15
        and bool(_PORT_NAME_CHARS.fullmatch(name))
        and any("a" <= c <= "z" for c in name)
        and "--" not in name
        and not name.startswith("-")
        and not name.endswith("-")
    )


def is_env_name(name: str) -> bool:
    """Kubernetes 1.34's relaxed rule: printable ASCII, any but '='."""
    return bool(name) and all(" " <= c <= "~" and c != "=" for c in name)


def _is_port(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 1 <= value <= 65535
    return isinstance(value, str) and is_port_name(value)


def _is_local_path(value: str) -> bool:
    return not posixpath.isabs(value) and ".." not in value.split("/")


def pod_template_problems(template: dict[str, Any], injected_env: Collection[str]) -> list[FieldError]:
    """Problems the API server would find in the pods of this template (a PodTemplate as a dict)."""
    spec = template.get("spec")
    if not isinstance(spec, dict):
        return []
    problems = list(_metadata(template.get("metadata")))
    # A mount of a volume that is itself refused is refused too; the volume's own error says why.
    volumes = {v.get("name") for _, v in _items(spec.get("volumes"))}
    problems += _volumes(spec)
    problems += _pod_fields(spec)
    seen: dict[str, str] = {}
    for kind in ("containers", "initContainers"):  # an init container's name is checked against the others
        for index, container in _items(spec.get(kind)):
            path: Path = ("spec", kind, index)
            problems += _container(path, container, volumes, injected_env, spec.get("hostNetwork") is True)
            name = container.get("name")
            if isinstance(name, str) and name:
                if name in seen and not seen[name].startswith(kind):
                    problems.append(
                        _error(
                            (*path, "name"),
                            f"duplicates the name of {seen[name]} (containers and init containers "
                            "share one set of names)",
                            name,
                            "give every container and init container its own name",
                        )
                    )
                seen.setdefault(name, f"{kind}[{index}]")
    problems += _host_port_conflicts(spec)
    return problems


def _host_port_conflicts(spec: dict[str, Any]) -> Iterator[FieldError]:
    """Two ports of a pod's containers with the same protocol, host IP and host port: the node has one
    of each. With hostNetwork the API server sets an unset host port to the container port first."""
    host_network = spec.get("hostNetwork") is True
    seen: dict[str, str] = {}
    for ci, container in _items(spec.get("containers")):
        for pi, port in _items(container.get("ports")):
            host = port.get("hostPort")
            if host_network and host in (None, 0):
                host = port.get("containerPort")
            if not isinstance(host, int) or not _is_port(host):
                continue
            key = f"{port.get('protocol') or 'TCP'}/{port.get('hostIP') or ''}/{host}"
            where = f"containers[{ci}].ports[{pi}]"
            if key in seen:
                yield _error(
                    ("spec", "containers", ci, "ports", pi, "hostPort"),
                    f"takes host port {key} that {seen[key]} already takes",
                    host,
                    "give each port its own hostPort, or remove hostPort",
                )
            seen.setdefault(key, where)


def _metadata(metadata: Any) -> Iterator[FieldError]:
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    if isinstance(annotations, dict) and annotations_size(annotations) > ANNOTATIONS_MAX_BYTES:
        yield _error(
            ("metadata", "annotations"),
            f"holds {annotations_size(annotations):,} bytes of keys and values, more than the "
            f"{ANNOTATIONS_MAX_BYTES:,} a pod may carry",
            None,
            "keep large content out of annotations (a ConfigMap, or the container's args)",
        )
    for key in annotations or {}:
        if isinstance(key, str) and not is_label_key(key.lower()):
            yield _error(
                ("metadata", "annotations", key),
                "is not a valid annotation key (an optional DNS prefix and '/', then at most 63 letters, "
                "digits, '-', '_' or '.')",
                key,
                "use a key like 'example.com/purpose'",
            )


def _volumes(spec: dict[str, Any]) -> Iterator[FieldError]:
    for index, volume in _items(spec.get("volumes")):
        yield from _volume(("spec", "volumes", index), volume)


def _volume(path: Path, volume: dict[str, Any]) -> Iterator[FieldError]:
    name = volume.get("name")
    if isinstance(name, str) and not is_dns1123_label(name):
        yield _error(
            (*path, "name"),
            "is not a DNS-1123 label (lowercase letters, digits and '-', at most 63)",
            name,
            "use a name like 'model-cache'",
        )
    sources = [key for key in _VOLUME_SOURCES if volume.get(key) is not None]
    if len(sources) > 1:
        yield _error(
            path, f"has more than one volume source ({', '.join(sources)})", sources, "keep only one of them"
        )
    for key in ("configMap", "secret"):
        source = volume.get(key)
        if isinstance(source, dict):
            yield from _key_to_path_source(
                (*path, key), source, "name" if key == "configMap" else "secretName"
            )
    size = (
        (volume.get("emptyDir") or {}).get("sizeLimit") if isinstance(volume.get("emptyDir"), dict) else None
    )
    if size is not None:
        try:
            parse_quantity(size)
        except QuantityError:
            yield _error(
                (*path, "emptyDir", "sizeLimit"),
                "must be a quantity of 0 or more",
                size,
                "write a size like '16Gi'",
            )
    host = volume.get("hostPath")
    if isinstance(host, dict) and host.get("type") not in (None, *_HOST_PATH_TYPES):
        yield _error(
            (*path, "hostPath", "type"),
            "is not a hostPath type",
            host.get("type"),
            f"use one of {', '.join(t for t in _HOST_PATH_TYPES if t)}",
        )


def _key_to_path_source(path: Path, source: dict[str, Any], name_field: str) -> Iterator[FieldError]:
    if not source.get(name_field):
        yield _error((*path, name_field), "is required", source.get(name_field), f"add '{name_field}'")
    mode = source.get("defaultMode")
    if isinstance(mode, int) and not 0 <= mode <= _MAX_FILE_MODE:
        yield _error(
            (*path, "defaultMode"),
            "must be a file mode between 0 and 0777 (511)",
            mode,
            "write it in octal, unquoted, e.g. defaultMode: 0644",
        )
    for index, item in _items(source.get("items")):
        item_path = (*path, "items", index)
        key, file_path, mode = item.get("key"), item.get("path"), item.get("mode")
        if isinstance(key, str) and not (_CONFIG_KEY.fullmatch(key) and len(key) <= _DNS1123_SUBDOMAIN_MAX):
            yield _error(
                (*item_path, "key"), "is not a valid key", key, "use letters, digits, '-', '_' or '.'"
            )
        if isinstance(file_path, str) and (not file_path or not _is_local_path(file_path)):
            yield _error(
                (*item_path, "path"),
                "must be a relative path without '..'",
                file_path,
                "write a path like 'config.yaml'",
            )
        if isinstance(mode, int) and not 0 <= mode <= _MAX_FILE_MODE:
            yield _error(
                (*item_path, "mode"), "must be a file mode between 0 and 0777 (511)", mode, "e.g. mode: 0644"
            )


def _pod_fields(spec: dict[str, Any]) -> Iterator[FieldError]:
    for key, allowed in (("restartPolicy", _RESTART_POLICIES), ("dnsPolicy", _DNS_POLICIES)):
        value = spec.get(key)
        if value is not None and value not in allowed:
            yield _error(
                ("spec", key), f"is not a supported {key}", value, f"use one of {', '.join(allowed)}"
            )
    yield from _node_selector(spec)
    yield from _tolerations(spec)
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and deadline <= 0:
        yield _error(
            ("spec", "activeDeadlineSeconds"),
            "must be greater than 0",
            deadline,
            "use 1 or more, or remove it",
        )


def _container(
    path: Path,
    container: dict[str, Any],
    volumes: set[Any],
    injected_env: Collection[str],
    host_network: bool = False,
) -> Iterator[FieldError]:
    name = container.get("name")
    if isinstance(name, str) and name and not is_dns1123_label(name):
        yield _error(
            (*path, "name"),
            "is not a DNS-1123 label (lowercase letters, digits and '-', at most 63)",
            name,
            "use a name like 'engine'",
        )
    policy = container.get("imagePullPolicy")
    if policy is not None and policy not in _PULL_POLICIES:
        yield _error(
            (*path, "imagePullPolicy"),
            "is not a pull policy",
            policy,
            f"use one of {', '.join(_PULL_POLICIES)}",
        )
    yield from _ports(path, container)
    yield from _host_ports(path, container, host_network)
    yield from _resource_names(path, container)
    yield from _env(path, container, injected_env)
    yield from _mounts(path, container, volumes)
    if path[1] == "initContainers":
        yield from _init_container(path, container)
    else:
        yield from _probes(path, container)


def _node_selector(spec: dict[str, Any]) -> Iterator[FieldError]:
    selector = spec.get("nodeSelector")
    for key, value in selector.items() if isinstance(selector, dict) else ():
        path: Path = ("spec", "nodeSelector", key)
        if not is_label_key(key):
            yield _error(
                path, "is not a valid label key", key, "use a node label key such as 'example.com/pool'"
            )
        if isinstance(value, str) and not is_label_value(value):
            yield _error(
                path,
                "is not a valid label value (at most 63 letters, digits, '-', '_' or '.')",
                value,
                "use the node label's value as the node carries it",
            )


def _tolerations(spec: dict[str, Any]) -> Iterator[FieldError]:
    for index, toleration in _items(spec.get("tolerations")):
        if toleration.get("operator") == "Exists" and toleration.get("value"):
            yield _error(
                ("spec", "tolerations", index, "value"),
                "must be empty when operator is Exists",
                toleration["value"],
                "remove the value, or use operator: Equal",
            )


def _host_ports(path: Path, container: dict[str, Any], host_network: bool) -> Iterator[FieldError]:
    if not host_network:
        return
    for index, port in _items(container.get("ports")):
        host, number = port.get("hostPort"), port.get("containerPort")
        if isinstance(host, int) and host not in (0, number):
            yield _error(
                (*path, "ports", index, "hostPort"),
                f"must equal containerPort ({number}) with hostNetwork",
                host,
                "remove hostPort, or set it to the containerPort",
            )


_STANDARD_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})


def _resource_names(path: Path, container: dict[str, Any]) -> Iterator[FieldError]:
    resources = container.get("resources")
    for section in ("requests", "limits"):
        values = resources.get(section) if isinstance(resources, dict) else None
        for name in values if isinstance(values, dict) else ():
            standard = name in _STANDARD_RESOURCES or str(name).startswith("hugepages-")
            if not standard and "/" not in str(name):
                yield _error(
                    (*path, "resources", section, name),
                    "is not a standard resource for containers (cpu, memory, ephemeral-storage, "
                    "hugepages-*) and has no domain",
                    name,
                    "write the device's full name, e.g. 'nvidia.com/gpu'",
                )


def _init_container(path: Path, container: dict[str, Any]) -> Iterator[FieldError]:
    # Kubernetes 1.34 keeps only `restartPolicy: Always` (a sidecar) on an init container.
    if container.get("restartPolicy") == "Always":
        yield from _probes(path, container)
        return
    for key in ("lifecycle", *_PROBES):
        if container.get(key) is not None:
            yield _error(
                (*path, key),
                "is not allowed on an init container that runs to completion",
                None,
                "remove it, or make it a sidecar with restartPolicy: Always",
            )


def _ports(path: Path, container: dict[str, Any]) -> Iterator[FieldError]:
    names: set[str] = set()
    for index, port in _items(container.get("ports")):
        port_path = (*path, "ports", index)
        name = port.get("name")
        if isinstance(name, str) and name:
            if not is_port_name(name):
                yield _error(
                    (*port_path, "name"),
                    "is not a port name (at most 15 of a-z, 0-9 and '-', with a letter, no '--')",
                    name,
                    "use a name like 'http'",
                )
            elif name in names:
                yield _error(
                    (*port_path, "name"),
                    "duplicates another port's name in this container",
                    name,
                    "rename one",
                )
            names.add(name)
        for key in ("containerPort", "hostPort"):
            number = port.get(key)
            unset = key == "hostPort" and number == 0
            if isinstance(number, int) and not unset and not _is_port(number):
                yield _error(
                    (*port_path, key), "must be a port between 1 and 65535", number, "use such a port"
                )
        protocol = port.get("protocol")
        if protocol is not None and protocol not in _PROTOCOLS:
            yield _error((*port_path, "protocol"), "is not a protocol", protocol, "use TCP, UDP or SCTP")


def _env(path: Path, container: dict[str, Any], injected_env: Collection[str]) -> Iterator[FieldError]:
    for index, item in _items(container.get("env")):
        name = item.get("name")
        if name in injected_env:
            continue  # render replaces it with Phalanx's own
        item_path = (*path, "env", index)
        if isinstance(name, str) and not is_env_name(name):
            yield _error(
                (*item_path, "name"),
                "is not an environment variable name (printable ASCII without '=')",
                name,
                "use a name like 'MODEL_PATH'",
            )
        source = item.get("valueFrom")
        if not isinstance(source, dict):
            continue
        given = [key for key in _ENV_SOURCES if source.get(key) is not None]
        if not given:
            yield _error(
                (*item_path, "valueFrom"), "names no source", source, f"set one of {', '.join(_ENV_SOURCES)}"
            )
        elif item.get("value"):
            yield _error(
                (*item_path, "valueFrom"),
                "cannot be combined with a value",
                item.get("value"),
                "keep value or valueFrom",
            )
        elif len(given) > 1:
            yield _error(
                (*item_path, "valueFrom"), "has more than one source", given, "keep only one of them"
            )
        yield from _env_source((*item_path, "valueFrom"), source)


def _env_source(path: Path, source: dict[str, Any]) -> Iterator[FieldError]:
    field = source.get("fieldRef")
    if isinstance(field, dict) and isinstance(field.get("fieldPath"), str):
        field_path = field["fieldPath"]
        subscripted = re.match(r"^(metadata\.(labels|annotations))\['(.*)'\]$", field_path)
        if subscripted:
            key = subscripted.group(3)
            if not is_label_key(key.lower() if subscripted.group(2) == "annotations" else key):
                yield _error(
                    (*path, "fieldRef", "fieldPath"), "names an invalid key", field_path, "use a valid key"
                )
        elif field_path not in _ENV_FIELD_PATHS:
            yield _error(
                (*path, "fieldRef", "fieldPath"),
                "is not a field a pod can read into its env",
                field_path,
                f"use one of {', '.join(sorted(_ENV_FIELD_PATHS))}",
            )
    for key in ("configMapKeyRef", "secretKeyRef"):
        ref = source.get(key)
        if not isinstance(ref, dict):
            continue
        if not ref.get("name"):
            yield _error((*path, key, "name"), "is required", ref.get("name"), f"name the {key[:-6]}")
        selector_key = ref.get("key")
        if isinstance(selector_key, str) and not (
            _CONFIG_KEY.fullmatch(selector_key) and len(selector_key) <= 253
        ):
            yield _error(
                (*path, key, "key"),
                "is not a valid key",
                selector_key,
                "use letters, digits, '-', '_' or '.'",
            )


def _mounts(path: Path, container: dict[str, Any], volumes: set[Any]) -> Iterator[FieldError]:
    mount_paths: set[str] = set()
    for index, mount in _items(container.get("volumeMounts")):
        mount_path = (*path, "volumeMounts", index)
        name = mount.get("name")
        if isinstance(name, str) and name not in volumes:
            yield _error(
                (*mount_path, "name"),
                "names no volume of this pod template",
                name,
                f"add a volume named '{name}' to spec.volumes, or mount one that exists"
                + (f" ({', '.join(sorted(str(v) for v in volumes))})" if volumes else ""),
            )
        where = mount.get("mountPath")
        if isinstance(where, str):
            if where in mount_paths:
                yield _error(
                    (*mount_path, "mountPath"), "is mounted twice in this container", where, "mount it once"
                )
            mount_paths.add(where)
        sub_path = mount.get("subPath")
        if isinstance(sub_path, str) and sub_path and not _is_local_path(sub_path):
            yield _error(
                (*mount_path, "subPath"),
                "must be a relative path without '..'",
                sub_path,
                "write a path inside the volume",
            )


def _probes(path: Path, container: dict[str, Any]) -> Iterator[FieldError]:
    for probe_name in _PROBES:
        probe = container.get(probe_name)
        if not isinstance(probe, dict):
            continue
        probe_path = (*path, probe_name)
        handlers = [h for h in _HANDLERS if probe.get(h) is not None]
        if not handlers:
            yield _error(probe_path, "has no handler", None, f"add one of {', '.join(_HANDLERS)}")
        elif len(handlers) > 1:
            yield _error(probe_path, "has more than one handler", handlers, "keep only one of them")
        for handler in ("httpGet", "tcpSocket"):
            action = probe.get(handler)
            if isinstance(action, dict) and "port" in action and not _is_port(action["port"]):
                yield _error(
                    (*probe_path, handler, "port"),
                    "is not a port number (1-65535) or port name",
                    action["port"],
                    "use the container's port, e.g. 8000 or 'http'",
                )
        for count in _PROBE_COUNTS:
            value = probe.get(count)
            if isinstance(value, int) and value < 0:
                yield _error((*probe_path, count), "must not be negative", value, "use 0 or more")
        threshold = probe.get("successThreshold")
        if probe_name != "readinessProbe" and isinstance(threshold, int) and threshold not in (0, 1):
            yield _error(
                (*probe_path, "successThreshold"),
                f"must be 1 for a {probe_name}",
                threshold,
                "use successThreshold: 1, or remove it",
            )
