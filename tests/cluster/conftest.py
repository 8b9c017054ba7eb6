"""Fixtures of the cluster test tier: one real control plane per session (see `controlplane.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.controlplane import (
    ControlPlane,
    ControlPlaneUnavailable,
    running_control_plane,
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the tails of every component log to failing cluster tests."""
    report = yield
    if report.failed and _STATE.get("cp") is not None:
        report.sections.append(("control-plane logs", _STATE["cp"].logs(40)))
    return report


_STATE: dict[str, Any] = {}


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    try:
        with running_control_plane() as cp:
            _STATE["cp"] = cp
            try:
                yield cp
            finally:
                _STATE.pop("cp", None)
    except ControlPlaneUnavailable as exc:
        pytest.skip(str(exc))
