"""What the cluster's nodes have free for the autoscaler's `placeable` (the I/O around
`autoscale.placement_cluster`): the nodes and the pods bound to them, listed at most once every
`ttl` seconds and only when a policy's unit needs an extended resource (GPUs), so a cluster whose
units need none is never listed. A list that is refused (no RBAC for nodes), fails or has more
than `most_pods` pods gives None: the limit is unknown, as if no room was known."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from lightkube import AsyncClient
from lightkube import operators as ops
from lightkube.resources.core_v1 import Node, Pod

from phalanx.autoscale.placement_cluster import Amounts, free_on_nodes
from phalanx.kube.errors import KUBE_ERRORS, describe
from phalanx.kube.resources import as_dict

log = logging.getLogger("phalanx.operator.autoscaler")

TTL_SECONDS = 10.0  # a pass every 15 s by default: one listing serves every policy of a pass
MOST_PODS = 20_000  # beyond this the listing costs the API server more than the figure is worth


class ClusterRoom:
    def __init__(
        self,
        client: AsyncClient,
        *,
        ttl: float = TTL_SECONDS,
        most_pods: int = MOST_PODS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.most_pods = most_pods
        self.clock = clock
        self._free: dict[str, Amounts] | None = None
        self._at: float | None = None
        self._warned = False

    async def free(self) -> dict[str, Amounts] | None:
        """Each Ready, schedulable node's free extended resources; None when not known."""
        now = self.clock()
        if self._at is not None and now - self._at < self.ttl:
            return self._free
        self._at = now
        self._free = await self._list()
        return self._free

    async def _list(self) -> dict[str, Amounts] | None:
        try:
            nodes = [as_dict(n) async for n in self.client.list(Node, chunk_size=500)]
            pods: list[dict[str, Any]] = []
            bound: dict[str, str | ops.BinaryOperator | ops.SequenceOperator] = {
                "spec.nodeName": ops.not_equal("")
            }
            async for pod in self.client.list(Pod, namespace="*", fields=bound, chunk_size=500):
                pods.append(as_dict(pod))
                if len(pods) > self.most_pods:
                    return None
        except KUBE_ERRORS as exc:
            if not self._warned:  # once: without the RBAC it fails every pass the same way
                log.warning(
                    "the nodes' free resources cannot be listed (%s); placeable unknown", describe(exc)
                )
                self._warned = True
            return None
        return free_on_nodes(nodes, pods)
