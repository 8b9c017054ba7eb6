"""Which event loop the servers run on, and how a wrong `PHALANX_EVENT_LOOP` is reported."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from phalanx.http.loop import EVENT_LOOP_ENV, EventLoopError, loop_factory, run


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    assert run(_loop_type()) is uvloop.Loop


@pytest.mark.parametrize("value", ["uvloop", " UVLoop ", ""])
def test_uvloop_when_asked_or_unset(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, value)
    assert loop_factory() is uvloop.new_event_loop


def test_asyncio_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "asyncio")
    assert loop_factory() is None
    assert not issubclass(run(_loop_type()), uvloop.Loop)


def test_an_unknown_loop_names_the_variable_and_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "trio")
    coro = _loop_type()
    with pytest.raises(EventLoopError, match=r"PHALANX_EVENT_LOOP='trio': use `uvloop`, `asyncio`"):
        run(coro)
    assert coro.cr_frame is None  # closed, so no "never awaited" warning


def test_without_uvloop_auto_falls_back_and_uvloop_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` raise ImportError
    monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    assert loop_factory() is None
    monkeypatch.setenv(EVENT_LOOP_ENV, "uvloop")
    with pytest.raises(EventLoopError, match="uvloop is not installed"):
        loop_factory()
