"""Runs `phalanx.router.Router` in this process in front of fixed backends, until SIGTERM/SIGINT.

    python bench/router/serve_phalanx.py --port 9000 --model m --backend http://127.0.0.1:8100 [...]
        [--policy NAME]   # sets RouterConfig.policy; exit 3 when the router has no such field or policy

The programmatic way (docs/router.md), so the benchmark does not depend on how the CLI evolves;
the benchmark starts it as its own process so the load generator never shares its event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys

from phalanx.router import Endpoint, Router, RouterConfig

try:  # the event loop `phalanx router` runs on (uvloop), where the measured commit has the choice
    from phalanx.http.loop import run
except ImportError:
    run = asyncio.run


def config(policy: str | None) -> RouterConfig:
    if policy is None:
        return RouterConfig()
    if "policy" not in {f.name for f in dataclasses.fields(RouterConfig)}:
        print(f"RouterConfig has no `policy` field: cannot run policy {policy!r}", file=sys.stderr)
        sys.exit(3)
    try:
        return RouterConfig(policy=policy)  # type: ignore[call-arg]
    except ValueError as exc:  # an unknown policy: the router's message lists the valid ones
        print(exc, file=sys.stderr)
        sys.exit(3)


async def serve(args: argparse.Namespace) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    router = Router(config(args.policy))
    await router.start("127.0.0.1", args.port)
    router.set_endpoints(
        Endpoint(name=f"backend-{i}", url=url, serving="bench", group_index=i, models=(args.model,))
        for i, url in enumerate(args.backend)
    )
    try:
        await stopping.wait()
    finally:
        await router.stop(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--backend", action="append", required=True)
    parser.add_argument("--policy")
    run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
