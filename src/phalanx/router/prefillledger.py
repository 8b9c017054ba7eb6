"""The prefill steps this router has sent to each prefill engine: the state behind
`policies.pdbacklog`, replaced on every send and answer (one event loop: no lock)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping

from phalanx.router.policies.pdbacklog import PrefillBacklog, finished, sent


class PrefillLedger:
    def __init__(self) -> None:
        self._backlogs: dict[str, PrefillBacklog] = {}
        self._keys = itertools.count()

    @property
    def backlogs(self) -> Mapping[str, PrefillBacklog]:
        return self._backlogs

    def begin(self, name: str, tokens: int) -> int:
        """A prefill step of `tokens` prompt tokens goes to `name` now; its key for `end`."""
        key = next(self._keys)
        self._backlogs[name] = sent(self._backlogs.get(name, PrefillBacklog()), key, tokens, time.monotonic())
        return key

    def end(self, name: str, key: int, ok: bool) -> None:
        """The step `key` was answered (`ok`: prefill done) or given up on."""
        backlog = self._backlogs.get(name)
        if backlog is not None:
            self._backlogs[name] = finished(backlog, key, time.monotonic(), ok)

    def forget(self, name: str) -> None:
        """An endpoint is gone, or a new pod took its name: what was learned of it no longer holds."""
        self._backlogs.pop(name, None)
