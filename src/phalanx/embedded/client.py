"""Talks to a running `phalanx up` over its control socket: `status`, `apply`, `scale`, `logs`, `down`."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path
from typing import Any

import aiohttp

from phalanx.embedded.daemon import CONTROL_SOCKET


class NotRunningError(Exception):
    """No `phalanx up` answers on the state directory's control socket."""


class ControlError(Exception):
    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def _message(body: Any, fallback: str) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message") or fallback)
    return fallback


async def _call(state_dir: Path, method: str, path: str, payload: Any = None, timeout: float = 30.0) -> Any:
    socket = state_dir / CONTROL_SOCKET
    if not socket.exists():
        raise NotRunningError(f"phalanx up is not running (no {socket}); start it with `phalanx up -f FILE`")
    connector = aiohttp.UnixConnector(path=str(socket))
    try:
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as session,
            session.request(
                method,
                f"http://phalanx{path}",
                # Not ASCII-escaped: a spec's size on the wire stays close to the file's.
                data=None
                if payload is None
                else io.BytesIO(json.dumps(payload, ensure_ascii=False).encode()),
                headers={"Content-Type": "application/json"},
            ) as response,
        ):
            text = await response.text()
            body: Any = text
            if response.content_type == "application/json":
                with contextlib.suppress(ValueError):
                    body = json.loads(text)
            if response.status >= 400 and response.status != 422:
                raise ControlError(response.status, _message(body, text or response.reason or ""), body)
            return body
    except TimeoutError:
        raise ControlError(
            504,
            f"phalanx up did not answer within {timeout:g} s; it may still be working on this request "
            "(`phalanx status` shows what it runs; its log says what it is doing)",
        ) from None
    except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionRefusedError) as exc:
        raise NotRunningError(
            f"phalanx up is not answering on {socket} ({exc}); start it with `phalanx up -f FILE`"
        ) from None


def call(state_dir: Path, method: str, path: str, payload: Any = None, timeout: float = 30.0) -> Any:
    return asyncio.run(_call(state_dir, method, path, payload, timeout))
