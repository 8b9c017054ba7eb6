"""The aiohttp site whose connections go through a `ConnectionGuard`.

Apart from `guard.py` because aiohttp's `TCPSite` has `__slots__`, which a class compiled with mypyc
cannot inherit (the guard is compiled with the router, setup.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from phalanx.http.guard import ConnectionGuard, FrontFactory


class GuardedSite(web.TCPSite):
    """A TCP site whose connections go through a `ConnectionGuard`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        front: FrontFactory | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(runner, host, port, **kw)
        self._guard = guard
        self._front = front

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        self._guard.bind(server, self._front)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard.factory,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port
