"""LeaderWorkerSet's controller manager on the test control plane, for the side-by-side in bench_operator.

The manager and its CRDs and webhook configurations come from `build_lws.sh` (the public Go module,
built into ~/.cache/phalanx/lws/<version>/). It runs out of cluster: its own certificate management is
off, it serves its webhooks on a loopback port with a serving certificate from a CA made here, and the
webhook configurations the module ships are applied with `clientConfig.url` pointing there. Gang
scheduling goes through Volcano (`gangSchedulingManagement.schedulerProvider: volcano`), so each group
gets a PodGroup, as ours do.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from tests.cluster.controlplane import ControlPlane, free_port, install_crds, openssl, stop_process_group

VERSION = os.environ.get("LWS_VERSION", "v0.9.0")
NAMESPACE = "lws-system"  # where the manager keeps its leader-election Lease (its built-in default)
ACCOUNT = "lws-controller-manager"
USER = f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"
# LWS creates StatefulSets; kube-controller-manager's StatefulSet controller creates the pods.
STATEFULSET_USER = "system:serviceaccount:kube-system:statefulset-controller"
GROUP_VERSION = "leaderworkerset.x-k8s.io/v1"
BUILD = "bench/operator/build_lws.sh"


def build_dir() -> Path:
    """Where build_lws.sh left the manager, or a SystemExit that says how to build it."""
    directory = Path(os.environ.get("PHALANX_LWS_DIR", Path.home() / ".cache/phalanx/lws" / VERSION))
    if not (directory / "manager").is_file():
        raise SystemExit(f"LeaderWorkerSet {VERSION} is not built in {directory}: run {BUILD} first")
    return directory


def serving_cert(directory: Path) -> bytes:
    """A CA and a serving certificate for 127.0.0.1 in controller-runtime's file names; returns the CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=lws-bench-webhook-ca", cwd=directory)  # fmt: skip
    (directory / "tls.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
    )
    openssl("req", *ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=127.0.0.1", cwd=directory)
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "tls.ext", "-out", "tls.crt", cwd=directory)  # fmt: skip
    return (directory / "ca.crt").read_bytes()


def apply_patches(doc: dict[str, Any], patches: list[dict[str, Any]]) -> dict[str, Any]:
    """The module's kustomize JSON patches for its webhook configurations use `replace` only."""
    patched = copy.deepcopy(doc)
    for patch in patches:
        if patch.get("op") != "replace":
            raise ValueError(f"unexpected patch op {patch.get('op')!r} in the LWS webhook patches")
        *parents, last = [p for p in patch["path"].split("/") if p]
        target: Any = patched
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[int(last) if isinstance(target, list) else last] = copy.deepcopy(patch["value"])
    return patched


def webhook_configurations(directory: Path, port: int, ca: bytes) -> list[dict[str, Any]]:
    """The module's Mutating/ValidatingWebhookConfiguration, patched as its kustomization does and
    pointed at the manager's loopback port instead of an in-cluster Service."""
    webhook = directory / "config" / "webhook"
    patches = {
        "MutatingWebhookConfiguration": yaml.safe_load((webhook / "mutating-patch.yaml").read_text()),
        "ValidatingWebhookConfiguration": yaml.safe_load((webhook / "validating-patch.yaml").read_text()),
    }
    bundle = base64.b64encode(ca).decode()
    docs = []
    for shipped in yaml.safe_load_all((webhook / "manifests.yaml").read_text()):
        if not shipped:
            continue
        doc = apply_patches(shipped, patches.get(shipped["kind"], []))
        doc["metadata"]["name"] = f"lws-{doc['metadata']['name']}"
        for hook in doc["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": bundle}
        docs.append(doc)
    return docs


def install(cp: ControlPlane, directory: Path, port: int, ca: bytes) -> None:
    install_crds(cp.client(), directory / "config" / "crd" / "bases")
    for doc in webhook_configurations(directory, port, ca):
        with contextlib.suppress(ApiError):  # 409: a rerun on the same control plane
            cp.client().create(from_dict(doc))


def manager_config(path: Path, *, webhook_port: int, cert_dir: Path, health_port: int) -> None:
    config = {
        "apiVersion": "config.lws.x-k8s.io/v1alpha1",
        "kind": "Configuration",
        "leaderElection": {"leaderElect": True},
        "internalCertManagement": {"enable": False},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},  # off: nothing scrapes it, and its default port may be taken
        "gangSchedulingManagement": {"schedulerProvider": "volcano"},
    }
    path.write_text(yaml.safe_dump(config))


@contextlib.contextmanager
def manager_process(
    cp: ControlPlane, kubeconfig: Path, workdir: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Install LWS's CRDs and webhooks and run its manager as `kubeconfig`'s user; yields the process
    and its health port."""
    directory = build_dir()
    cert_dir = workdir / "lws-certs"
    ca = serving_cert(cert_dir)
    webhook_port, health_port = free_port(), free_port()
    install(cp, directory, webhook_port, ca)
    config = workdir / "lws-config.yaml"
    manager_config(config, webhook_port=webhook_port, cert_dir=cert_dir, health_port=health_port)
    log = workdir / "lws-manager.log"
    command = [str(directory / "manager"), f"--config={config}", f"--kubeconfig={kubeconfig}",
               "--zap-devel=false", "--zap-log-level=info"]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process, health_port
    finally:
        stop_process_group(process)


def leader_worker_set(
    namespace: str, name: str, replicas: int, size: int, leader: dict[str, Any], worker: dict[str, Any]
) -> dict[str, Any]:
    """`replicas` groups of `size` pods: a leader pod `leader` and size-1 worker pods `worker`, gang
    scheduled by Volcano (the manager then makes a PodGroup per group)."""

    def template(spec: dict[str, Any]) -> dict[str, Any]:
        return {"spec": {**copy.deepcopy(spec), "schedulerName": "volcano"}}

    return {
        "apiVersion": GROUP_VERSION,
        "kind": "LeaderWorkerSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "leaderWorkerTemplate": {
                "size": size,
                "leaderTemplate": template(leader),
                "workerTemplate": template(worker),
            },
        },
    }
