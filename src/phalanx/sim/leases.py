"""KV blocks a prefill engine holds for a decode engine after the request finished; pure.

A lease names the blocks (their owner key in the `BlockManager`), how many prompt tokens they
hold and when they expire. The engine shell frees the blocks when the pull completes, when the
decode side gives up, or when the lease expires; the table only keeps the books. Recently expired
ids are remembered (bounded) so a late pull is told "expired", not "unknown".
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

REMEMBERED_EXPIRED = 4096


@dataclass
class Lease:
    lease_id: str  # vLLM: remote_request_id; SGLang: the bootstrap room
    owner: str  # the block table's key in the BlockManager
    block_ids: list[int]
    tokens: int
    expires: float
    pulling: bool = False


def lease_owner(lease_id: str) -> str:
    """Block-table key of a lease: never equal to a sequence id."""
    return f"lease:{lease_id}"


class LeaseTable:
    def __init__(self) -> None:
        self._leases: dict[str, Lease] = {}
        self._expired: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._leases)

    def __contains__(self, lease_id: str) -> bool:
        return lease_id in self._leases

    @property
    def owners(self) -> set[str]:
        return {lease.owner for lease in self._leases.values()}

    @property
    def num_blocks(self) -> int:
        return sum(len(lease.block_ids) for lease in self._leases.values())

    def add(self, lease: Lease) -> None:
        if lease.lease_id in self._leases:
            raise ValueError(f"lease {lease.lease_id} already exists")
        self._leases[lease.lease_id] = lease
        self._expired.pop(lease.lease_id, None)

    def get(self, lease_id: str) -> Lease | None:
        return self._leases.get(lease_id)

    def pop(self, lease_id: str) -> Lease | None:
        return self._leases.pop(lease_id, None)

    def expire(self, lease_id: str, now: float) -> Lease | None:
        """Remove `lease_id` if its time is up (a renewed lease is not); remember it as expired."""
        lease = self._leases.get(lease_id)
        if lease is None or lease.expires > now:
            return None
        del self._leases[lease_id]
        self._expired[lease_id] = None
        while len(self._expired) > REMEMBERED_EXPIRED:
            self._expired.popitem(last=False)
        return lease

    def why_missing(self, lease_id: str) -> str:
        if lease_id in self._expired:
            return "expired"
        return "unknown"
