"""`phalanx sim` plus vLLM's `POST /tokenize`, for routers that tokenize through the engine.

    python bench/router/sim_tokenize.py SIM-FLAGS...      # the same flags as `phalanx sim`

vllm-router's `cache_aware` policy asks the worker to tokenize each prompt before it picks one
(`POST /v1/completions/render`, then `POST /tokenize`); the simulator serves neither, so
`cache_aware` would fall back to a weaker choice against it than against a real vLLM. This wrapper
adds `/tokenize` with vLLM's answer shape (`count`, `max_model_len`, `tokens`, `token_strs`), using
the simulator's own tokenizer and chat template, so the token ids agree with its prefix cache.
It changes nothing else; the quality test uses it for every contender (`--sim-tokenize`, default on).
"""

from __future__ import annotations

import sys
from typing import Any

from aiohttp import web

from phalanx.sim import server, tokenizer
from phalanx.sim.main import main


async def _tokenize(request: web.Request) -> web.Response:
    try:
        body: Any = await request.json()
    except ValueError:
        return web.json_response({"error": {"message": "body is not JSON", "code": 400}}, status=400)
    if isinstance(body.get("messages"), list):
        text = tokenizer.render_chat(body["messages"])
    elif isinstance(body.get("prompt"), str):
        text = body["prompt"]
    else:
        return web.json_response({"error": {"message": "need prompt or messages", "code": 400}}, status=400)
    ids = tokenizer.tokenize(text)
    limit = request.app.get(_MAX_LEN_KEY, 0)
    return web.json_response({"count": len(ids), "max_model_len": limit, "tokens": ids, "token_strs": None})


_MAX_LEN_KEY = web.AppKey("bench_max_model_len", int)
_plain_app = server.SimServer.app


def _app_with_tokenize(self: server.SimServer) -> web.Application:
    app = _plain_app(self)
    app[_MAX_LEN_KEY] = self._config.max_model_len
    app.router.add_post("/tokenize", _tokenize)
    return app


if __name__ == "__main__":
    server.SimServer.app = _app_with_tokenize  # type: ignore[method-assign]
    sys.exit(main(sys.argv[1:]))
