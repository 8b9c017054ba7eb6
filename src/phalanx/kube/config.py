"""Finding the cluster: an explicit kubeconfig, else $KUBECONFIG or ~/.kube/config, else in-cluster."""

from __future__ import annotations

from lightkube.config.kubeconfig import KubeConfig


class ClusterConfigError(Exception):
    """No usable cluster configuration; the message says where it looked and what to do."""


def load_kubeconfig(path: str | None) -> KubeConfig:
    try:
        return KubeConfig.from_file(path) if path else KubeConfig.from_env()
    except Exception as exc:  # missing, unreadable or malformed: all the same to the user
        raise ClusterConfigError(
            f"no cluster configuration ({exc}); pass --kubeconfig, set KUBECONFIG, or run in a pod "
            "with a service account"
        ) from None
